//! Where a company, or a what-if value, ranks among its peers.

use std::collections::BTreeMap;

use metrix_core::error::{FieldViolation, Violations};
use metrix_core::time::{now_micros, timestamp};
use metrix_proto::benchmark::v1::*;
use tonic::Request;

use crate::engine::Scope as PeerScope;
use crate::error::BenchmarkError;
use crate::peers::{CallerCredentials, MetricInfo};
use crate::{convert, ranking};

use super::checks::{MAX_RANKED_METRICS, band_of, metric_list, metric_of, period_of, reader, sector_of, status_error};
use super::{BenchmarkApi, Comparison, SectorChoice, slice_text};

impl BenchmarkApi {
    pub(super) async fn rank_company(
        &self,
        request: Request<RankCompanyRequest>,
    ) -> Result<RankCompanyResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let credentials = CallerCredentials::from_request(&caller.organization_id, request.metadata());
        let request = request.into_inner();
        let catalogue = self.engine.peers.metrics().await?;
        let mut violations = Violations::default();
        let company_id = request.company_id.trim().to_owned();
        if company_id.is_empty() {
            violations.push(FieldViolation::new("company_id", "is required"));
        }
        let period = violations.check(period_of("period", &request.period));
        let requested_metrics = violations.check(metric_list(&catalogue, &request.metric_ids));
        let band = if request.revenue_band_id.trim().is_empty() {
            Some(None)
        } else {
            violations.check(band_of("revenue_band_id", &request.revenue_band_id).map(Some))
        };
        let sector = violations.check(sector_of("sector_id", &request.sector_id));
        if request.all_sectors && !request.sector_id.trim().is_empty() {
            violations.push(FieldViolation::new(
                "sector_id",
                "must be empty when all_sectors is set",
            ));
        }
        let source = self
            .source_field(
                &caller.organization_id,
                "source_id",
                &request.source_id,
                &mut violations,
            )
            .await?;
        let (Some(period), Some(requested_metrics), Some(band), Some(sector), Some(source)) =
            (period, requested_metrics, band, sector, source)
        else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let company = self.company(&credentials, &company_id).await?;
        self.engine
            .admit(
                &caller,
                "RankCompany",
                format!("company={} period={period}", company.company_id),
            )
            .await?;
        let values = self
            .engine
            .peers
            .company_values(&credentials, &company.company_id, &period)
            .await?;
        let metrics: Vec<MetricInfo> = if requested_metrics.is_empty() {
            catalogue
                .iter()
                .filter(|metric| values.contains_key(&metric.id))
                .cloned()
                .collect()
        } else {
            requested_metrics
        };
        let revenue_band_id = match band {
            Some(band) => band,
            None if company.revenue_band_id.is_empty() => {
                return Err(BenchmarkError::FailedPrecondition(
                    "the company has no revenue band yet (record its ARR), so name revenue_band_id".to_owned(),
                ));
            }
            None => company.revenue_band_id.clone(),
        };
        let sector_choice = match (request.all_sectors, sector) {
            (true, _) => SectorChoice::AllSectors,
            (false, Some(sector)) => SectorChoice::Named(sector),
            (false, None) => SectorChoice::OwnOrBand(company.sector_id.clone()),
        };
        let comparison = Comparison {
            revenue_band_id,
            sector: sector_choice,
            period,
        };
        let (scope, rankings) = self
            .rank_in_sector(&metrics, &values, comparison, &source, &caller.organization_id)
            .await?;
        let overall = ranking::overall(&rankings);
        Ok(RankCompanyResponse {
            company_id: company.company_id,
            period: period.to_string(),
            revenue_band_id: scope.revenue_band_id.clone(),
            sector_id: scope.sector_id.clone().unwrap_or_default(),
            source: Some(source.to_proto()),
            rankings: rankings.iter().map(convert::ranking).collect(),
            overall: Some(convert::overall(&overall)),
            compute_time: Some(timestamp(now_micros())),
        })
    }

    pub(super) async fn calculate_ranking(
        &self,
        request: Request<CalculateRankingRequest>,
    ) -> Result<CalculateRankingResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let credentials = CallerCredentials::from_request(&caller.organization_id, request.metadata());
        let request = request.into_inner();
        let catalogue = self.engine.peers.metrics().await?;
        let mut violations = Violations::default();
        if request.values.is_empty() {
            violations.push(FieldViolation::new("values", "must hold at least one value"));
        } else if request.values.len() > MAX_RANKED_METRICS {
            violations.push(FieldViolation::new(
                "values",
                format!("must hold at most {MAX_RANKED_METRICS} values"),
            ));
        }
        let mut metrics = Vec::new();
        let mut values = BTreeMap::new();
        for (metric_id, value) in &request.values {
            let field = format!("values[{metric_id}]");
            if let Some(metric) = violations.check(metric_of(&catalogue, &field, metric_id)) {
                if value.is_finite() {
                    values.insert(metric.id.clone(), *value);
                    metrics.push(metric);
                } else {
                    violations.push(FieldViolation::new(field, "must be a finite number"));
                }
            }
        }
        metrics.sort_by(|left, right| left.id.cmp(&right.id));
        let band = violations.check(band_of("revenue_band_id", &request.revenue_band_id));
        let sector = violations.check(sector_of("sector_id", &request.sector_id));
        let period = violations.check(period_of("period", &request.period));
        let source = self
            .source_field(
                &caller.organization_id,
                "source_id",
                &request.source_id,
                &mut violations,
            )
            .await?;
        let (Some(band), Some(sector), Some(period), Some(source)) = (band, sector, period, source) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        // The company, when named, must be the caller's own; every company
        // of the caller's organisation is left out of its peers anyway.
        if !request.company_id.trim().is_empty() {
            self.company(&credentials, request.company_id.trim()).await?;
        }
        self.engine
            .admit(
                &caller,
                "CalculateRanking",
                format!(
                    "{} values={:?}",
                    slice_text("*", &band, sector.as_deref(), &period.to_string()),
                    values
                ),
            )
            .await?;
        let scope = PeerScope {
            revenue_band_id: band,
            sector_id: sector,
            period,
        };
        let rankings = self
            .rank(&metrics, &values, &scope, &source, &caller.organization_id)
            .await?;
        let overall = ranking::overall(&rankings);
        Ok(CalculateRankingResponse {
            period: period.to_string(),
            revenue_band_id: scope.revenue_band_id.clone(),
            sector_id: scope.sector_id.clone().unwrap_or_default(),
            source: Some(source.to_proto()),
            rankings: rankings.iter().map(convert::ranking).collect(),
            overall: Some(convert::overall(&overall)),
        })
    }
}
