//! `metrix import kpis FILE.csv`: imports a KPI file through ImportKpis with
//! progress bars. The file is sent in chunks of whole rows (each chunk is
//! stored in one transaction): first every chunk is validated as a dry run,
//! so rejected rows are known before anything is written, then the chunks
//! are imported. Re-running an import is safe: rows equal to the stored
//! values store nothing.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use metrix_proto::metrics::v1::{ImportKpisRequest, ImportKpisResponse, ImportRowIssue};
use tonic::transport::Channel;

use crate::Failure;

/// Options of `metrix import kpis`.
#[derive(Args)]
pub struct ImportKpisArgs {
    /// The CSV file: a header naming company_id (unless --company-id is
    /// given), metric_id, period, value and optionally note.
    file: PathBuf,
    /// The company every row belongs to when the file has no company_id column.
    #[arg(long)]
    company_id: Option<String>,
    /// The gateway or the metrics service (native gRPC).
    #[arg(long, env = "METRIX_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An access token of an ANALYST or ADMIN.
    #[arg(long, env = "METRIX_TOKEN", conflicts_with = "api_key")]
    token: Option<String>,
    /// An API key with the metrics:write scope.
    #[arg(long, env = "METRIX_API_KEY")]
    api_key: Option<String>,
    /// Validates every row and stores nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rows per request.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    chunk_rows: u32,
}

/// A chunk of the file as its own CSV, and where its rows start in the file.
struct Chunk {
    csv: String,
    /// For each row: its first line in the chunk and in the file.
    lines: Vec<(i32, i32)>,
    rows: u64,
}

impl Chunk {
    /// The file line of a line of this chunk.
    fn file_line(&self, chunk_line: i32) -> i32 {
        self.lines
            .iter()
            .rev()
            .find(|(start, _)| *start <= chunk_line)
            .map_or(chunk_line, |(start, file_line)| file_line + (chunk_line - start))
    }
}

/// Splits `content` into chunks of `rows_per_chunk` rows, each with the header.
fn split(content: &str, rows_per_chunk: usize) -> anyhow::Result<Vec<Chunk>> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(content.as_bytes());
    let header = reader.headers().context("reading the header line")?.clone();
    let render = |record: &csv::StringRecord| -> anyhow::Result<String> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(record).context("re-encoding a row")?;
        Ok(String::from_utf8(writer.into_inner().context("re-encoding a row")?)?)
    };
    let header_text = render(&header)?;
    let mut chunks = Vec::new();
    let mut current = Chunk {
        csv: header_text.clone(),
        lines: Vec::new(),
        rows: 0,
    };
    let mut next_line = 2;
    for record in reader.records() {
        let record = record.context("reading a row")?;
        let file_line = record
            .position()
            .map_or(0, |position| i32::try_from(position.line()).unwrap_or(i32::MAX));
        let text = render(&record)?;
        current.lines.push((next_line, file_line));
        next_line += 1 + i32::try_from(text.trim_end_matches('\n').matches('\n').count()).unwrap_or(0);
        current.csv.push_str(&text);
        current.rows += 1;
        if current.rows as usize == rows_per_chunk {
            chunks.push(std::mem::replace(
                &mut current,
                Chunk {
                    csv: header_text.clone(),
                    lines: Vec::new(),
                    rows: 0,
                },
            ));
            next_line = 2;
        }
    }
    if current.rows > 0 || chunks.is_empty() {
        chunks.push(current);
    }
    Ok(chunks)
}

fn progress(label: &str, rows: u64) -> ProgressBar {
    let bar = ProgressBar::new(rows);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} rows ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Runs the import and prints its outcome.
pub async fn run(args: ImportKpisArgs) -> Result<(), Failure> {
    let content = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let chunks = split(&content, args.chunk_rows as usize)?;
    let total_rows: u64 = chunks.iter().map(|chunk| chunk.rows).sum();
    let channel = tonic::transport::Endpoint::from_shared(args.url.clone())
        .with_context(|| format!("--url {}", args.url))?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let credential = match (&args.token, &args.api_key) {
        (Some(token), _) => ("authorization", format!("Bearer {token}")),
        (None, Some(key)) => ("x-api-key", key.clone()),
        (None, None) => {
            return Err(Failure::Other(anyhow::anyhow!(
                "give an access token (--token, METRIX_TOKEN) or an API key (--api-key, METRIX_API_KEY)"
            )));
        }
    };
    let mut client = MetricsServiceClient::new(channel);
    let company_id = args.company_id.clone().unwrap_or_default();

    let call = |client: &mut MetricsServiceClient<Channel>, chunk: &Chunk, dry_run: bool| {
        let mut request = tonic::Request::new(ImportKpisRequest {
            csv_content: chunk.csv.clone(),
            company_id: company_id.clone(),
            dry_run,
        });
        let value = credential.1.parse();
        let mut client = client.clone();
        async move {
            request
                .metadata_mut()
                .insert(credential.0, value.context("the credential is not a valid header")?);
            let answer: ImportKpisResponse = client
                .import_kpis(request)
                .await
                .map_err(|status| anyhow::anyhow!("{}: {}", status.code(), status.message()))?
                .into_inner();
            Ok::<_, anyhow::Error>(answer)
        }
    };

    let mut rejected: Vec<ImportRowIssue> = Vec::new();
    let mut warnings: Vec<ImportRowIssue> = Vec::new();
    let validating = progress("validating", total_rows);
    for chunk in &chunks {
        let answer = call(&mut client, chunk, true).await.context("validating the file")?;
        for mut issue in answer.rejected_rows {
            issue.line_number = chunk.file_line(issue.line_number);
            rejected.push(issue);
        }
        for mut issue in answer.warnings {
            issue.line_number = chunk.file_line(issue.line_number);
            warnings.push(issue);
        }
        validating.inc(chunk.rows);
    }
    validating.finish();
    for issue in &warnings {
        eprintln!("warning  line {}: {} {}", issue.line_number, issue.column, issue.reason);
    }
    for issue in &rejected {
        eprintln!("rejected line {}: {} {}", issue.line_number, issue.column, issue.reason);
    }
    let accepted = total_rows - rejected.len() as u64;
    if args.dry_run {
        println!(
            "dry run: {total_rows} rows, {accepted} valid, {} rejected; nothing stored",
            rejected.len()
        );
    } else {
        let importing = progress("importing", total_rows);
        let (mut created, mut updated, mut unchanged) = (0, 0, 0);
        for chunk in &chunks {
            let answer = call(&mut client, chunk, false).await.with_context(|| {
                format!(
                    "importing (rows before line {} are stored; re-running the import is safe)",
                    chunk.lines.first().map_or(0, |(_, line)| *line)
                )
            })?;
            created += answer.created_count;
            updated += answer.updated_count;
            unchanged += answer.unchanged_count;
            importing.inc(chunk.rows);
        }
        importing.finish();
        println!(
            "{total_rows} rows: {created} created, {updated} updated, {unchanged} unchanged, {} rejected",
            rejected.len()
        );
    }
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(Failure::Other(anyhow::anyhow!(
            "{} rows were rejected (listed above)",
            rejected.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_the_header_and_map_lines_back() {
        let content = "metric_id,period,value,note\n\
                       arr,2026-Q1,1,\"two\nlines\"\n\
                       arr,2026-Q2,2,\n\
                       arr,2026-Q3,3,\n";
        let chunks = split(content, 2).expect("splits");
        assert_eq!(chunks.len(), 2);
        assert!(chunks[1].csv.starts_with("metric_id,period,value,note\n"));
        assert_eq!(chunks[0].rows, 2);
        // The second row of the first chunk starts on line 4 of both.
        assert_eq!(chunks[0].file_line(4), 4);
        // The only row of the second chunk is line 2 there, line 5 in the file.
        assert_eq!(chunks[1].file_line(2), 5);
    }
}
