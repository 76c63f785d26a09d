//! Embeds the built console (`console/dist/`, committed; CI proves it is
//! rebuilt from `console/src/` byte for byte) into the gateway: a table of
//! every file with its gzip copy, read by `console.rs`.

#![allow(clippy::expect_used, reason = "a build script fails the build with the reason")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dist = manifest.join("console").join("dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    assert!(
        files.iter().any(|(path, _)| path == "/index.html"),
        "{} holds no index.html: build the console with `npm ci && npm run build` in gateway/console",
        dist.display()
    );
    files.sort();
    let mut table = String::from("&[\n");
    for (path, file) in &files {
        let gzip = PathBuf::from(format!("{}.gz", file.display()));
        assert!(
            gzip.is_file(),
            "{} has no gzip copy: rebuild the console",
            file.display()
        );
        writeln!(
            table,
            "    Asset {{ path: {path:?}, body: include_bytes!({file:?}), gzip: include_bytes!({gzip:?}) }},",
            file = file.display().to_string(),
            gzip = gzip.display().to_string(),
        )
        .expect("writing to a String cannot fail");
    }
    table.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("console_assets.rs");
    std::fs::write(out, table).expect("write console_assets.rs");
}

/// Every file below `dir` but the gzip copies, as (URL path, file path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!(
            "{} is missing: build the console with `npm ci && npm run build` in gateway/console",
            dir.display()
        );
    };
    for entry in entries {
        let path = entry.expect("read a console/dist entry").path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.extension().is_none_or(|extension| extension != "gz") {
            let relative = path
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .replace('\\', "/");
            files.push((format!("/{relative}"), path));
        }
    }
}
