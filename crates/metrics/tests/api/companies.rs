//! Companies: create, read, update, list, permissions and tenancy.

use metrix_core::authn::{Role, Scope};
use metrix_proto::metrics::v1::*;
use prost_types::FieldMask;
use tonic::{Code, Request};

use crate::helpers::*;
use metrix_core::both_backends;

async fn companies_are_created_read_and_updated(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let admin = app.admin(&organization);
    let created = app
        .client()
        .create_company(authorized(
            CreateCompanyRequest {
                company: Some(Company {
                    company_id: "ignored".into(),
                    revenue_band_id: "arr_50m_plus".into(),
                    ..company("  Ledgerly  ")
                }),
            },
            &admin,
        ))
        .await
        .expect("created")
        .into_inner()
        .company
        .expect("company");
    assert_ne!(created.company_id, "ignored");
    assert_eq!(created.name, "Ledgerly");
    assert_eq!(created.organization_id, organization);
    assert_eq!(created.revenue_band_id, "", "output only: derived from ARR");
    assert!(created.create_time.is_some());

    let reader = app.user(&organization, Role::CompanyUser);
    let fetched = app
        .client()
        .get_company(authorized(
            GetCompanyRequest {
                company_id: created.company_id.clone(),
            },
            &reader,
        ))
        .await
        .expect("read")
        .into_inner()
        .company
        .expect("company");
    assert_eq!(fetched, created);

    let updated = app
        .client()
        .update_company(authorized(
            UpdateCompanyRequest {
                company: Some(Company {
                    company_id: created.company_id.clone(),
                    name: "Not applied".into(),
                    sector_id: "healthtech".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["sector_id".into()],
                }),
            },
            &admin,
        ))
        .await
        .expect("updated")
        .into_inner()
        .company
        .expect("company");
    assert_eq!(updated.sector_id, "healthtech");
    assert_eq!(updated.name, "Ledgerly");

    let refused = app
        .client()
        .update_company(authorized(
            UpdateCompanyRequest {
                company: Some(Company {
                    company_id: created.company_id.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["revenue_band_id".into()],
                }),
            },
            &admin,
        ))
        .await;
    let status = assert_code(refused, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["update_mask"]);
}

async fn bad_companies_name_every_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin(&new_organization());
    let result = app
        .client()
        .create_company(authorized(
            CreateCompanyRequest {
                company: Some(Company {
                    name: " ".into(),
                    sector_id: "space".into(),
                    business_model: 0,
                    country_code: "XX".into(),
                    founding_year: 1700,
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await;
    let status = assert_code(result, Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "company.name",
            "company.sector_id",
            "company.business_model",
            "company.country_code",
            "company.founding_year"
        ]
    );
}

async fn roles_and_scopes_decide_who_may_write(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    let request = || CreateCompanyRequest {
        company: Some(company("Acme")),
    };
    for role in [Role::CompanyUser, Role::Analyst] {
        let denied = app
            .client()
            .create_company(authorized(request(), &app.user(&organization, role)))
            .await;
        assert_code(denied, Code::PermissionDenied);
    }
    let events_only = app.issuer.api_key(&organization, &[Scope::EventsWrite]);
    assert_code(
        app.client().create_company(with_api_key(request(), &events_only)).await,
        Code::PermissionDenied,
    );
    let writer = app.issuer.api_key(&organization, &[Scope::MetricsWrite]);
    let created = app
        .client()
        .create_company(with_api_key(request(), &writer))
        .await
        .expect("an API key with metrics:write creates companies")
        .into_inner()
        .company
        .expect("company");
    assert_eq!(created.organization_id, organization);
    assert_code(
        app.client().create_company(Request::new(request())).await,
        Code::Unauthenticated,
    );
    assert_code(
        app.client().create_company(with_api_key(request(), "mx_forged")).await,
        Code::Unauthenticated,
    );
}

async fn another_organisation_sees_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = new_organization();
    let company_id = app.create_company(&owner, "Private Co").await;
    let stranger = app.admin(&new_organization());
    assert_code(
        app.client()
            .get_company(authorized(
                GetCompanyRequest {
                    company_id: company_id.clone(),
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
    assert_code(
        app.client()
            .update_company(authorized(
                UpdateCompanyRequest {
                    company: Some(Company {
                        company_id: company_id.clone(),
                        name: "Mine now".into(),
                        ..Default::default()
                    }),
                    update_mask: None,
                },
                &stranger,
            ))
            .await,
        Code::NotFound,
    );
    let listed = app
        .client()
        .list_companies(authorized(ListCompaniesRequest::default(), &stranger))
        .await
        .expect("listed")
        .into_inner();
    assert!(listed.companies.is_empty());
}

async fn companies_page_by_name_with_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    for name in ["Echo", "Alpha", "Delta", "Charlie", "Bravo"] {
        app.create_company(&organization, name).await;
    }
    let reader = app.issuer.api_key(&organization, &[Scope::Read]);
    let mut names = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .client()
            .list_companies(with_api_key(
                ListCompaniesRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    country_code: "DE".into(),
                    ..Default::default()
                },
                &reader,
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.companies.len() <= 2);
        names.extend(page.companies.into_iter().map(|company| company.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(names, ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]);

    let first = app
        .client()
        .list_companies(with_api_key(
            ListCompaniesRequest {
                page_size: 2,
                ..Default::default()
            },
            &reader,
        ))
        .await
        .expect("page")
        .into_inner();
    let replayed = app
        .client()
        .list_companies(with_api_key(
            ListCompaniesRequest {
                page_size: 2,
                page_token: first.next_page_token,
                sector_id: "fintech".into(),
                ..Default::default()
            },
            &reader,
        ))
        .await;
    let status = assert_code(replayed, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);

    let none = app
        .client()
        .list_companies(with_api_key(
            ListCompaniesRequest {
                sector_id: "healthtech".into(),
                ..Default::default()
            },
            &reader,
        ))
        .await
        .expect("filtered")
        .into_inner();
    assert!(none.companies.is_empty());
    let bad_filter = app
        .client()
        .list_companies(with_api_key(
            ListCompaniesRequest {
                sector_id: "nonsense".into(),
                revenue_band_id: "arr_huge".into(),
                ..Default::default()
            },
            &reader,
        ))
        .await;
    let status = assert_code(bad_filter, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["sector_id", "revenue_band_id"]);
}

async fn reference_data_is_listed(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.user(&new_organization(), Role::CompanyUser);
    let sectors = app
        .client()
        .list_sectors(authorized(ListSectorsRequest::default(), &token))
        .await
        .expect("sectors")
        .into_inner();
    assert!(sectors.sectors.len() >= 15);
    assert!(sectors.sectors.iter().any(|sector| sector.id == "fintech"));
    let definitions = app
        .client()
        .list_metric_definitions(authorized(
            ListMetricDefinitionsRequest {
                metric_ids: vec!["ndr".into(), "arr".into()],
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("definitions")
        .into_inner();
    let ids: Vec<_> = definitions
        .metric_definitions
        .iter()
        .map(|definition| definition.metric_id.as_str())
        .collect();
    assert_eq!(ids, ["arr", "ndr"]);
    let ndr = &definitions.metric_definitions[1];
    assert_eq!(ndr.unit, MetricUnit::Percent as i32);
    assert!(!ndr.formula.is_empty());
    let all = app
        .client()
        .list_metric_definitions(authorized(ListMetricDefinitionsRequest::default(), &token))
        .await
        .expect("definitions")
        .into_inner();
    for id in [
        "arr",
        "mrr",
        "arr_growth_yoy",
        "ndr",
        "grr",
        "gross_margin",
        "magic_number",
        "cac_payback_months",
        "burn_multiple",
        "pipeline_coverage",
        "rule_of_40",
    ] {
        assert!(
            all.metric_definitions
                .iter()
                .any(|definition| definition.metric_id == id),
            "{id} is defined"
        );
    }
}

both_backends!(
    companies_are_created_read_and_updated,
    bad_companies_name_every_field,
    roles_and_scopes_decide_who_may_write,
    another_organisation_sees_nothing,
    companies_page_by_name_with_filters,
    reference_data_is_listed,
);
