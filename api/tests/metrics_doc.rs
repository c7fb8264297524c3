//! `docs/metrics.md` and `/metrics` agree: after one sample of every metric,
//! every documented metric is exposed with its documented type and labels,
//! and every exposed `gatemesh_` metric is documented.

use std::collections::{BTreeMap, BTreeSet};

use crate::admin_common::*;
use api::admin_router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Debug, PartialEq, Eq)]
struct Documented {
    kind: String,
    labels: BTreeSet<String>,
}

/// Rows of the first table whose first cell is a backticked metric name.
fn documented() -> BTreeMap<String, Documented> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('|')) {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let Some(name) = cells
            .first()
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        assert_eq!(
            cells.len(),
            4,
            "row of {name} needs name, type, labels, meaning"
        );
        assert!(!cells[3].is_empty(), "{name} has no meaning");
        let labels = cells[2]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty() && l != "—")
            .collect();
        let previous = out.insert(
            name.to_owned(),
            Documented {
                kind: cells[1].to_owned(),
                labels,
            },
        );
        assert!(previous.is_none(), "{name} documented twice");
    }
    assert!(out.len() > 10, "the table was not found");
    out
}

/// `name → (type, labels of its samples)` from a text exposition.
fn exposed(text: &str) -> BTreeMap<String, Documented> {
    let mut out: BTreeMap<String, Documented> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("bad TYPE line {line}");
            };
            out.insert(
                name.to_owned(),
                Documented {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                },
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let series = line.split_whitespace().next().expect("sample");
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| out.contains_key(*f)))
            .unwrap_or(name);
        let entry = out
            .get_mut(family)
            .unwrap_or_else(|| panic!("sample {name} without a TYPE line"));
        // Label values here contain no `,` or `=` (ids and names only).
        for pair in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let key = pair.split('=').next().expect("label key");
            if key != "le" {
                entry.labels.insert(key.to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn every_documented_metric_is_exposed_and_every_exposed_one_documented() {
    let state = admin_state(FakeCluster::new(), None);
    record_every_metric(&state.metrics);
    let response = admin_router(state)
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).expect("utf-8");

    let docs = documented();
    let exposed = exposed(&text);
    let exposed_gatemesh: BTreeMap<_, _> = exposed
        .iter()
        .filter(|(name, _)| name.starts_with("gatemesh_"))
        .collect();

    let undocumented: Vec<_> = exposed_gatemesh
        .keys()
        .filter(|name| !docs.contains_key(name.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in docs/metrics.md: {undocumented:?}"
    );

    for (name, doc) in &docs {
        let Some(found) = exposed.get(name) else {
            panic!("{name} is documented but not exposed");
        };
        assert_eq!(found.kind, doc.kind, "{name}: documented type");
        assert!(
            text.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name.as_str())),
            "{name} has no sample after recording one of each"
        );
        assert_eq!(found.labels, doc.labels, "{name}: documented labels");
    }
}
