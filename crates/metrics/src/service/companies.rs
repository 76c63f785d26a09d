//! Companies and the reference lists they are described with (sectors,
//! metric definitions).

use metrix_core::authn::{Scope, principal};
use metrix_core::error::{FieldViolation, Violations, within};
use metrix_core::time::{current_year, now_micros, timestamp};
use metrix_core::{page_token, reference};
use metrix_proto::metrics::v1::*;
use serde::{Deserialize, Serialize};
use tonic::Request;

use crate::app::peer_key;
use crate::catalog;
use crate::company::{CompanyFields, fields_to_update};
use crate::error::MetricsError;
use crate::store::{CompanyCursor, CompanyFilter, CompanyRow};

use super::{ADMINS, LIST_PAGE, MetricsApi, READERS, authorize, metric_filter, required};

fn company_to_proto(row: CompanyRow) -> Company {
    Company {
        company_id: row.company_id,
        organization_id: row.organization_id,
        name: row.name,
        sector_id: row.sector_id,
        business_model: row.business_model,
        country_code: row.country_code,
        founding_year: row.founding_year,
        revenue_band_id: row.revenue_band_id,
        create_time: Some(timestamp(row.created_at)),
        update_time: Some(timestamp(row.updated_at)),
    }
}

/// A page of a static list ordered by id.
fn static_page<T: Clone>(
    items: &[T],
    id_of: impl Fn(&T) -> &str,
    page_size: i32,
    page_token_text: &str,
    filters: &str,
) -> Result<(Vec<T>, String), MetricsError> {
    let (size, cursor) = page_token::page_request::<IdCursor>(page_size, page_token_text, filters, LIST_PAGE)
        .map_err(MetricsError::from)?;
    let rows: Vec<T> = items
        .iter()
        .filter(|item| cursor.as_ref().is_none_or(|cursor| id_of(item) > cursor.id.as_str()))
        .take(size as usize + 1)
        .cloned()
        .collect();
    Ok(page_token::paginate(rows, size, filters, |item| IdCursor {
        id: id_of(item).to_owned(),
    }))
}

/// Where the next page of a static list (sectors, metric definitions) starts.
#[derive(Serialize, Deserialize)]
struct IdCursor {
    id: String,
}

impl MetricsApi {
    pub(super) async fn create_company(
        &self,
        request: Request<CreateCompanyRequest>,
    ) -> Result<CreateCompanyResponse, MetricsError> {
        let caller = authorize(&request, &ADMINS, &[Scope::MetricsWrite])?.clone();
        let company = request.into_inner().company.unwrap_or_default();
        let fields = within("company", CompanyFields::parse(&company, current_year()))?;
        let now = now_micros();
        let company_id = uuid::Uuid::now_v7().to_string();
        let mut row = CompanyRow {
            peer_key: peer_key(&self.state.peer_key_secret, &company_id),
            company_id,
            organization_id: caller.organization_id.clone(),
            name: String::new(),
            sector_id: String::new(),
            business_model: 0,
            country_code: String::new(),
            founding_year: 0,
            revenue_band_id: String::new(),
            created_at: now,
            updated_at: now,
        };
        fields.write_to(&mut row);
        self.state.store.insert_company(&row).await?;
        tracing::info!(company_id = %row.company_id, organization_id = %row.organization_id, "company created");
        Ok(CreateCompanyResponse {
            company: Some(company_to_proto(row)),
        })
    }

    pub(super) async fn get_company(
        &self,
        request: Request<GetCompanyRequest>,
    ) -> Result<GetCompanyResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let company_id = required("company_id", &request.get_ref().company_id).map_err(MetricsError::from)?;
        let row = self
            .state
            .store
            .company(&caller.organization_id, &company_id)
            .await?
            .ok_or(MetricsError::NotFound("company"))?;
        Ok(GetCompanyResponse {
            company: Some(company_to_proto(row)),
        })
    }

    pub(super) async fn update_company(
        &self,
        request: Request<UpdateCompanyRequest>,
    ) -> Result<UpdateCompanyResponse, MetricsError> {
        let caller = authorize(&request, &ADMINS, &[Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        let update = request.company.unwrap_or_default();
        let company_id = required("company.company_id", &update.company_id).map_err(MetricsError::from)?;
        let mask_paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let fields = fields_to_update(&update, &mask_paths).map_err(MetricsError::from)?;
        let mut row = self
            .state
            .store
            .company(&caller.organization_id, &company_id)
            .await?
            .ok_or(MetricsError::NotFound("company"))?;
        let next = within(
            "company",
            CompanyFields::stored(&row).updated(&update, &fields, current_year()),
        )?;
        next.write_to(&mut row);
        row.updated_at = now_micros();
        self.state.store.update_company(&row).await?;
        Ok(UpdateCompanyResponse {
            company: Some(company_to_proto(row)),
        })
    }

    pub(super) async fn list_companies(
        &self,
        request: Request<ListCompaniesRequest>,
    ) -> Result<ListCompaniesResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let mut violations = Violations::new();
        let sector_id = request.sector_id.trim().to_owned();
        if !sector_id.is_empty() && reference::sector(&sector_id).is_none() {
            violations.push(FieldViolation::new("sector_id", "is not a sector; see ListSectors"));
        }
        if BusinessModel::try_from(request.business_model).is_err() {
            violations.push(FieldViolation::new("business_model", "is not a business model"));
        }
        let revenue_band_id = request.revenue_band_id.trim().to_owned();
        if !revenue_band_id.is_empty() && reference::revenue_band(&revenue_band_id).is_none() {
            violations.push(FieldViolation::new("revenue_band_id", "is not a revenue band"));
        }
        let country_code = request.country_code.trim().to_owned();
        if !country_code.is_empty() && !reference::is_country_code(&country_code) {
            violations.push(FieldViolation::new(
                "country_code",
                "is not an ISO 3166-1 alpha-2 code such as DE",
            ));
        }
        violations.finish()?;
        let filter = CompanyFilter {
            sector_id,
            business_model: request.business_model,
            revenue_band_id,
            country_code,
        };
        let filters = format!(
            "companies|{}|{}|{}|{}|{}",
            caller.organization_id,
            filter.sector_id,
            filter.business_model,
            filter.revenue_band_id,
            filter.country_code
        );
        let (size, cursor) =
            page_token::page_request::<CompanyCursor>(request.page_size, &request.page_token, &filters, LIST_PAGE)
                .map_err(MetricsError::from)?;
        let rows = self
            .state
            .store
            .list_companies(&caller.organization_id, &filter, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &filters, |row| CompanyCursor {
            name: row.name.clone(),
            company_id: row.company_id.clone(),
        });
        Ok(ListCompaniesResponse {
            companies: rows.into_iter().map(company_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn list_sectors(
        &self,
        request: Request<ListSectorsRequest>,
    ) -> Result<ListSectorsResponse, MetricsError> {
        principal(&request)?;
        let request = request.get_ref();
        let (sectors, next_page_token) = static_page(
            &reference::SECTORS,
            |sector| sector.id,
            request.page_size,
            &request.page_token,
            "sectors",
        )?;
        Ok(ListSectorsResponse {
            sectors: sectors.iter().map(reference::SectorInfo::to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn list_metric_definitions(
        &self,
        request: Request<ListMetricDefinitionsRequest>,
    ) -> Result<ListMetricDefinitionsResponse, MetricsError> {
        principal(&request)?;
        let request = request.get_ref();
        let metric_ids = metric_filter("metric_ids", &request.metric_ids).map_err(MetricsError::from)?;
        let selected: Vec<&catalog::MetricSpec> = catalog::all()
            .iter()
            .filter(|spec| metric_ids.is_empty() || metric_ids.iter().any(|id| id == spec.id))
            .collect();
        let filters = format!("metric-definitions|{}", metric_ids.join(","));
        let (page, next_page_token) = static_page(
            &selected,
            |spec| spec.id,
            request.page_size,
            &request.page_token,
            &filters,
        )?;
        Ok(ListMetricDefinitionsResponse {
            metric_definitions: page.into_iter().map(catalog::MetricSpec::to_proto).collect(),
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pages_walk_the_whole_list() {
        let items: Vec<String> = (0..25).map(|index| format!("item-{index:02}")).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = static_page(&items, String::as_str, 10, &token, "test").expect("page");
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, items);
        assert!(static_page(&items, String::as_str, 10, "garbage", "test").is_err());
    }
}
