//! ListPeerValues: anonymised values of every organisation, for platform
//! services only.

use futures::StreamExt as _;
use metrix_core::authn::{Role, Scope};
use metrix_proto::metrics::v1::*;
use tonic::Code;

use crate::helpers::*;
use metrix_core::both_backends;

async fn collect(app: &TestApp, token: &str, request: ListPeerValuesRequest) -> (Vec<PeerValue>, String) {
    let mut stream = app
        .client()
        .list_peer_values(authorized(request, token))
        .await
        .expect("the stream opens")
        .into_inner();
    let mut values = Vec::new();
    let mut next_page_token = String::new();
    while let Some(message) = stream.next().await {
        let message = message.expect("a message");
        assert!(message.peer_values.len() <= 1_000);
        values.extend(message.peer_values);
        next_page_token = message.next_page_token;
    }
    (values, next_page_token)
}

async fn peers_are_anonymised_across_organisations(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut company_ids = Vec::new();
    let mut organizations = Vec::new();
    for index in 0..3 {
        let organization = new_organization();
        organizations.push(organization.clone());
        let company_id = app.create_company(&organization, &format!("Company {index}")).await;
        app.client()
            .record_kpis(authorized(
                RecordKpisRequest {
                    kpi_values: vec![
                        KpiValue {
                            company_id: company_id.clone(),
                            metric_id: "arr".into(),
                            period: "2026-Q1".into(),
                            value: 2_000_000.0 * f64::from(index + 1),
                            ..Default::default()
                        },
                        KpiValue {
                            company_id: company_id.clone(),
                            metric_id: "ndr".into(),
                            period: "2026-Q1".into(),
                            value: 100.0 + f64::from(index),
                            ..Default::default()
                        },
                    ],
                },
                &app.admin(&organization),
            ))
            .await
            .expect("recorded");
        company_ids.push(company_id);
    }
    let token = app.platform(&[Scope::PeersRead]);
    let (values, next_page_token) = collect(
        &app,
        &token,
        ListPeerValuesRequest {
            metric_ids: vec!["ndr".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(next_page_token.is_empty());
    assert_eq!(values.len(), 3);
    // Noise-infused: no value leaves as recorded; each is its company's
    // value distorted by 10–25 %, and the distortion is fixed.
    for value in &values {
        assert!(
            [100.0, 101.0, 102.0].iter().all(|recorded| value.value != *recorded),
            "{} left as recorded",
            value.value
        );
        assert!(
            [100.0, 101.0, 102.0].iter().any(|recorded| {
                let distortion = (value.value / recorded - 1.0).abs();
                (0.099..=0.251).contains(&distortion)
            }),
            "{} is not a distorted value",
            value.value
        );
    }
    let (again, _) = collect(
        &app,
        &token,
        ListPeerValuesRequest {
            metric_ids: vec!["ndr".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(again, values, "the same values every time");
    // Each organisation has its own opaque key.
    let mut organization_keys: Vec<&str> = values.iter().map(|value| value.organization_key.as_str()).collect();
    organization_keys.sort_unstable();
    organization_keys.dedup();
    assert_eq!(organization_keys.len(), 3);
    assert!(values.iter().all(|value| value.sector_id == "fintech"));
    for value in &values {
        assert!(company_ids.iter().all(|id| !value.peer_key.contains(id.as_str())));
    }
    let keys: Vec<&str> = values.iter().map(|value| value.peer_key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "ordered by peer key");

    let (excluded, _) = collect(
        &app,
        &token,
        ListPeerValuesRequest {
            metric_ids: vec!["ndr".into()],
            exclude_company_ids: vec![company_ids[0].clone()],
            revenue_band_id: "arr_1m_5m".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(excluded.len(), 1, "{excluded:?}");
    let distortion = (excluded[0].value / 101.0 - 1.0).abs();
    assert!((0.099..=0.251).contains(&distortion), "{}", excluded[0].value);
    assert_eq!(excluded[0].revenue_band_id, "arr_1m_5m");

    // Leaving out an organisation leaves out every company of it.
    let (others, _) = collect(
        &app,
        &token,
        ListPeerValuesRequest {
            metric_ids: vec!["ndr".into()],
            exclude_organization_ids: vec![organizations[1].clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(others.len(), 2, "{others:?}");
    assert!(
        others
            .iter()
            .all(|value| value.organization_key != excluded[0].organization_key)
    );

    let (first_page, token_for_more) = collect(
        &app,
        &token,
        ListPeerValuesRequest {
            page_size: 4,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first_page.len(), 4);
    assert!(!token_for_more.is_empty());
    let (rest, end) = collect(
        &app,
        &token,
        ListPeerValuesRequest {
            page_size: 4,
            page_token: token_for_more,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rest.len(), 2);
    assert!(end.is_empty());
}

async fn only_platform_services_read_peers(backend: Backend) {
    let app = spawn_app(backend).await;
    let organization = new_organization();
    for token in [
        app.admin(&organization),
        app.user(&organization, Role::Analyst),
        app.issuer
            .service_token(&organization, &[Scope::Read, Scope::MetricsWrite]),
    ] {
        let result = app
            .client()
            .list_peer_values(authorized(ListPeerValuesRequest::default(), &token))
            .await;
        assert_code(result.map(|_| ()), Code::PermissionDenied);
    }
    let key = app.issuer.api_key(&organization, &[Scope::Read]);
    let result = app
        .client()
        .list_peer_values(with_api_key(ListPeerValuesRequest::default(), &key))
        .await;
    assert_code(result.map(|_| ()), Code::PermissionDenied);
}

both_backends!(
    peers_are_anonymised_across_organisations,
    only_platform_services_read_peers,
);
