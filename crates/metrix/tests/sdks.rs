//! Tracking SDKs, unmodified, against a fresh `metrix dev`: Segment's
//! `segment-analytics-python` and `@segment/analytics-node`, RudderStack's
//! `rudder-sdk-python` and `@rudderstack/rudder-sdk-node`, each given only
//! the gateway as its host and a Metrix API key as its write key
//! (`tests/sdks/`). Every SDK sends the same plan twice (`tests/sdks/plan.json`);
//! Metrix must have stored each message exactly once, as the plan says
//! (a message from an aliased id under the user it was aliased to), count
//! it on the dashboard, and keep the users' profiles: merged traits, groups
//! and aliases.
//!
//! Needs Python 3 with pip and Node.js 20+ with npm; installs the Python
//! SDKs (`pip install`) and the Node ones (`npm ci` in `tests/sdks`) when
//! they are missing. Never skipped.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails loudly")]

mod dev;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use dev::{Demo, repository_root, start_dev};
use serde_json::{Value as Json, json};

/// The SDKs, as (driver, SDK name, language tag in the message ids).
const SDKS: [(&str, &str, &str); 4] = [
    ("python_sdks.py", "segment", "py"),
    ("python_sdks.py", "rudder", "py"),
    ("node_sdks.mjs", "segment", "js"),
    ("node_sdks.mjs", "rudder", "js"),
];

fn install_sdks_when_missing(sdks: &Path) {
    let python = Command::new("python3")
        .args(["-c", "import segment.analytics, rudderstack.analytics"])
        .output()
        .expect("python3 runs (the SDK test needs Python 3 with pip)");
    if !python.status.success() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "segment-analytics-python",
                "rudder-sdk-python",
            ])
            .status()
            .expect("pip runs");
        assert!(
            status.success(),
            "pip install segment-analytics-python rudder-sdk-python failed"
        );
    }
    if !sdks.join("node_modules/@segment/analytics-node").exists()
        || !sdks.join("node_modules/@rudderstack/rudder-sdk-node").exists()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(sdks)
            .status()
            .expect("npm runs (the SDK test needs Node.js 20+ with npm)");
        assert!(status.success(), "npm ci in tests/sdks failed");
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn call(http: &reqwest::Client, request: reqwest::RequestBuilder) -> (u16, Json) {
    let _ = http;
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Json::String(text)))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdks_store_every_message_exactly_once() {
    let root = repository_root();
    let sdks = root.join("tests/sdks");
    install_sdks_when_missing(&sdks);
    let target = root.join("target");
    std::fs::create_dir_all(&target).expect("target/");
    let log = target.join("sdks-test-metrix.log");
    let dev = start_dev(&log, Demo::None);
    let gateway = dev.gateway.clone();
    let http = http();

    let (status, signed_up) = call(
        &http,
        http.post(format!("{gateway}/v1/auth:signUp")).json(&json!({
            "email": format!("sdk-{}@example.com", uuid::Uuid::new_v4().simple()),
            "password": "correct horse battery staple",
            "organizationName": "SDK Co",
        })),
    )
    .await;
    assert_eq!(status, 200, "{signed_up}");
    let token = signed_up["tokens"]["accessToken"].as_str().expect("a token").to_owned();
    let (status, created) = call(
        &http,
        http.post(format!("{gateway}/v1/api-keys"))
            .bearer_auth(&token)
            .json(&json!({"displayName": "tracking", "scopes": ["events:write"]})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let write_key = created["key"].as_str().expect("a key").to_owned();

    // A bad message refuses its whole batch, by index and field; nothing of it is stored.
    let (status, refused) = call(
        &http,
        http.post(format!("{gateway}/segment/v1/batch"))
            .basic_auth(&write_key, Some(""))
            .json(&json!({"batch": [
                {"type": "track", "userId": "u", "event": "Fine", "messageId": "refused-0"},
                {"type": "track", "userId": "u", "messageId": "refused-1"},
            ]})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["details"][0]["fieldViolations"][0]["field"], "batch[1].event",
        "{refused}"
    );
    // Without a key, or with a wrong one, nothing is taken.
    let (status, _) = call(
        &http,
        http.post(format!("{gateway}/segment/v1/track"))
            .json(&json!({"userId": "u", "event": "Anonymous"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &http,
        http.post(format!("{gateway}/segment/v1/track"))
            .basic_auth("mx_not_a_key", Some(""))
            .json(&json!({"userId": "u", "event": "Forged"})),
    )
    .await;
    assert_eq!(status, 401);

    // context.ip and context.userAgent count only from a key that forwards
    // its users' events (scope events:forward); from any other the edge's
    // own observation stands.
    let (status, forwarding) = call(
        &http,
        http.post(format!("{gateway}/v1/api-keys"))
            .bearer_auth(&token)
            .json(&json!({"displayName": "server", "scopes": ["events:write", "events:forward"]})),
    )
    .await;
    assert_eq!(status, 200, "{forwarding}");
    let forwarding_key = forwarding["key"].as_str().expect("a key").to_owned();
    let context = json!({"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (forwarded)"});
    for (key, id) in [(&forwarding_key, "forwarded-1"), (&write_key, "claimed-1")] {
        let (status, answer) = call(
            &http,
            http.post(format!("{gateway}/segment/v1/track"))
                .basic_auth(key, Some(""))
                .json(&json!({"userId": "u", "event": "Viewed", "messageId": id, "context": context})),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, forwarded) = call(
        &http,
        http.get(format!("{gateway}/v1/events/forwarded-1")).bearer_auth(&token),
    )
    .await;
    let forwarded = &forwarded["event"];
    assert_eq!(forwarded["ip"], "203.0.113.7", "{forwarded}");
    assert_eq!(forwarded["userAgent"], "Mozilla/5.0 (forwarded)", "{forwarded}");
    let (_, claimed) = call(
        &http,
        http.get(format!("{gateway}/v1/events/claimed-1")).bearer_auth(&token),
    )
    .await;
    let claimed = &claimed["event"];
    assert_eq!(
        claimed["ip"], "127.0.0.1",
        "a write key cannot claim an address: {claimed}"
    );
    assert_ne!(claimed["userAgent"], "Mozilla/5.0 (forwarded)", "{claimed}");
    let (status, refused) = call(
        &http,
        http.post(format!("{gateway}/segment/v1/track"))
            .basic_auth(&forwarding_key, Some(""))
            .json(&json!({"userId": "u", "event": "Viewed", "context": {"ip": "not an address"}})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["details"][0]["fieldViolations"][0]["field"], "context.ip",
        "{refused}"
    );

    let run = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    for (driver, sdk, _) in SDKS {
        let interpreter = if driver.ends_with(".py") { "python3" } else { "node" };
        let output = Command::new(interpreter)
            .arg(sdks.join(driver))
            .args([sdk, &gateway, &write_key, &run])
            .current_dir(&sdks)
            .output()
            .expect("the SDK driver runs");
        assert!(
            output.status.success(),
            "{driver} {sdk} failed:\n{}\n{}\nmetrix dev's log: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            log.display()
        );
    }

    // What Metrix stored, against the plan.
    let plan: Json =
        serde_json::from_str(&std::fs::read_to_string(sdks.join("plan.json")).expect("the plan")).expect("JSON");
    let messages = plan["messages"].as_array().expect("messages");
    let (status, listed) = call(
        &http,
        http.get(format!("{gateway}/v1/events?pageSize=1000"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let stored: BTreeMap<String, &Json> = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| (event["eventId"].as_str().expect("an id").to_owned(), event))
        .collect();
    // The plan's messages, and the two of the context check.
    let expected_events = SDKS.len() * messages.len() + 2;
    assert_eq!(
        stored.len(),
        expected_events,
        "every message once, none of the refused batch: {:?}",
        stored.keys().collect::<Vec<_>>()
    );
    for (_, sdk, language) in SDKS {
        let ids = |name: &str| format!("{run}-{sdk}-{language}-{name}");
        let fill = |text: &str| {
            text.replace("{u1}", &ids("u1"))
                .replace("{u2}", &ids("u2"))
                .replace("{anon}", &ids("anon"))
        };
        // Ids aliased by the plan's earlier messages: later messages of
        // them are stored under the user.
        let mut aliased: BTreeMap<String, String> = BTreeMap::new();
        for (index, message) in messages.iter().enumerate() {
            let id = ids(&index.to_string());
            let event = stored.get(&id).unwrap_or_else(|| panic!("{id} was not stored"));
            let call = message["call"].as_str().expect("a call");
            assert_eq!(event["eventType"], call, "{id}");
            let user = fill(
                message["userId"]
                    .as_str()
                    .or_else(|| message["anonymousId"].as_str())
                    .expect("a user"),
            );
            let user = aliased.get(&user).cloned().unwrap_or(user);
            assert_eq!(event["userId"], user.as_str(), "{id}");
            if call == "alias" {
                aliased.insert(
                    fill(message["previousId"].as_str().expect("a previous id")),
                    user.clone(),
                );
            }
            let name = match call {
                "track" => message["event"].as_str().unwrap_or_default().to_owned(),
                "page" | "screen" => message["name"].as_str().unwrap_or_default().to_owned(),
                "group" => message["groupId"].as_str().unwrap_or_default().to_owned(),
                "alias" => ids("anon"),
                _ => String::new(),
            };
            assert_eq!(event["eventName"].as_str().unwrap_or_default(), name, "{id}");
            if let Some(properties) = message["properties"].as_object() {
                for (key, value) in properties {
                    assert_eq!(&event["properties"][key], value, "{id}: properties.{key}");
                }
            }
            if call == "identify" {
                assert_eq!(event["properties"]["traits"], message["traits"], "{id}");
            }
        }
    }

    // Profiles, through REST: the identify traits and the group of {u1};
    // {u2} lists the anonymous id as an alias, and its events include the
    // anonymous ones, the one sent after the alias among them.
    let identified = messages
        .iter()
        .find(|message| message["call"] == "identify")
        .expect("an identify");
    for (_, sdk, language) in SDKS {
        let ids = |name: &str| format!("{run}-{sdk}-{language}-{name}");
        let (status, u1) = call(
            &http,
            http.get(format!("{gateway}/v1/userProfiles/{}", ids("u1")))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 200, "{u1}");
        let profile = &u1["userProfile"];
        assert_eq!(profile["userId"], ids("u1").as_str(), "{u1}");
        assert_eq!(profile["traits"], identified["traits"], "{sdk}-{language}: {u1}");
        assert_eq!(
            profile["groups"],
            json!([{"groupId": "acme", "traits": {"name": "Acme"}}]),
            "{u1}"
        );
        let (status, u2) = call(
            &http,
            http.get(format!("{gateway}/v1/userProfiles/{}", ids("u2")))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 200, "{u2}");
        assert_eq!(u2["userProfile"]["aliases"], json!([ids("anon")]), "{u2}");
        let (status, events) = call(
            &http,
            http.get(format!("{gateway}/v1/userProfiles/{}/events", ids("u2")))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(status, 200, "{events}");
        let mut listed: Vec<String> = events["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["eventId"].as_str().expect("an id").to_owned())
            .collect();
        listed.sort();
        let mut expected: Vec<String> = messages
            .iter()
            .enumerate()
            .filter(|(_, message)| {
                ["{u2}", "{anon}"].contains(&message["userId"].as_str().unwrap_or_default())
                    || message["anonymousId"] == "{anon}"
            })
            .map(|(index, _)| ids(&index.to_string()))
            .collect();
        expected.sort();
        assert_eq!(listed, expected, "{sdk}-{language}: the events of {{u2}} and its alias");
    }

    // The dashboard counts what was stored, and each user once.
    let (status, dashboard) = call(
        &http,
        http.get(format!("{gateway}/v1/dashboard?rangePreset=RANGE_PRESET_DAY"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200, "{dashboard}");
    assert_eq!(
        dashboard["dashboard"]["totalEvents"],
        expected_events.to_string(),
        "{dashboard}"
    );
    // Two users and one anonymous visitor per SDK: the visitor's page came
    // before the alias and was counted as its own user, which the alias does
    // not rewrite; the visitor's track after it counts as {u2}. And the user
    // of the context check.
    assert_eq!(
        dashboard["dashboard"]["activeUsers"]["inRange"],
        (SDKS.len() * 3 + 1).to_string(),
        "{dashboard}"
    );
}
