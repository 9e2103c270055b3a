//! The Grafana dashboard and the alert rules in `deploy/` name only figures
//! tokend exports on `/metrics`: a renamed or dropped metric fails here, not
//! as an empty panel or an alert that can never fire. promtool (in the
//! deploy check) proves the queries parse; this proves the names are real.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

use tokend::grpc::proto::{AuthenticateTokenRequest, RevokeScrapeTokenRequest};

use crate::http_client::{get, samples};
use crate::support::{Backend, TestResult, TestServer, authed, scrape_request};

/// The files whose metric names must exist, relative to the repository root.
const MONITORING_FILES: [&str; 2] = [
    "deploy/grafana/tokend.json",
    "deploy/k8s/base/prometheusrule.yaml",
];

/// Every `tokend_…` and `process_…` identifier in `text`, wherever it
/// appears (queries, descriptions, comments): a name a reader is shown must
/// be real too.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let name =
        Regex::new(r"(?:^|[^A-Za-z0-9_:])(tokend_[a-z0-9_]+|process_[a-z_]+)").expect("regex");
    name.captures_iter(text).map(|c| c[1].to_owned()).collect()
}

/// What a scrape exports: each family's type (from `# TYPE` lines) and the
/// names of its sample lines.
struct Exported {
    families: BTreeMap<String, String>,
    samples: BTreeSet<String>,
}

impl Exported {
    fn parse(text: &str) -> Exported {
        let families = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
            .collect();
        let samples = samples(text).into_iter().map(|(name, _, _)| name).collect();
        Exported { families, samples }
    }

    /// Whether `name` can be queried (or, for a histogram's own name, is
    /// the family its `_bucket`, `_sum` and `_count` series belong to).
    fn has(&self, name: &str) -> bool {
        match self.families.get(name).map(String::as_str) {
            Some("histogram") => return self.samples.contains(&format!("{name}_bucket")),
            Some(_) => return self.samples.contains(name),
            None => {}
        }
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix).is_some_and(|family| {
                self.families.get(family).map(String::as_str) == Some("histogram")
                    && self.samples.contains(name)
            })
        })
    }
}

async fn the_dashboard_and_the_alerts_use_only_exported_metrics(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme-org");
    let gateway = server.introspector();
    let mut client = server.client();

    // Calls that give every family its labelled series: a create, a
    // successful and a failed authentication, a tenant scrape, a revoke.
    let created = client
        .create_token(authed(scrape_request("prom"), &admin))
        .await?
        .into_inner();
    client
        .authenticate_token(authed(
            AuthenticateTokenRequest {
                secret: created.secret.clone(),
                ..Default::default()
            },
            &gateway,
        ))
        .await?;
    let failed = client
        .authenticate_token(authed(
            AuthenticateTokenRequest {
                secret: "not-a-token".into(),
                ..Default::default()
            },
            &gateway,
        ))
        .await;
    assert!(
        failed.is_err(),
        "a made-up secret authenticates: {failed:?}"
    );
    let bearer = format!("Bearer {}", created.secret);
    let tenant = get(
        server.http_addr,
        "/api/metrics/prometheus",
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(tenant.status, 200, "{}", tenant.body);
    let id = created
        .token
        .as_ref()
        .map(|t| t.id)
        .expect("token metadata");
    client
        .revoke_scrape_token(authed(
            RevokeScrapeTokenRequest {
                id,
                reason: String::new(),
            },
            &admin,
        ))
        .await?;

    let scrape = get(server.http_addr, "/metrics", &[]).await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let exported = Exported::parse(&scrape.body);

    let root = env!("CARGO_MANIFEST_DIR");
    let mut missing = Vec::new();
    let mut checked = BTreeSet::new();
    for file in MONITORING_FILES {
        let text = std::fs::read_to_string(format!("{root}/{file}"))?;
        let names = referenced_names(&text);
        // An extraction that finds nothing would pass vacuously.
        assert!(
            names.len() >= 3,
            "{file}: only {names:?} found; is the extraction broken?"
        );
        for name in names {
            if !exported.has(&name) {
                missing.push(format!("{file}: {name}"));
            }
            checked.insert(name);
        }
    }
    for expected in [
        "tokend_grpc_requests_total",
        "tokend_grpc_request_duration_seconds_bucket",
        "tokend_db_statements_total",
    ] {
        assert!(
            checked.contains(expected),
            "{expected} is not among the names checked: {checked:?}"
        );
    }
    assert!(
        missing.is_empty(),
        "the dashboard or the alert rules use metrics tokend does not export on /metrics:\n  {}\n\
         (exported families: {:?})",
        missing.join("\n  "),
        exported.families.keys().collect::<Vec<_>>()
    );
    server.shutdown().await;
    Ok(())
}

crate::backend_tests!(the_dashboard_and_the_alerts_use_only_exported_metrics);

#[test]
fn names_are_whole_identifiers_and_histogram_series_map_to_their_family() {
    let names = referenced_names(
        "rate(tokend_a_total[5m]) x_tokend_b process_cpu_seconds_total process_… \
         {\"expr\":\"tokend_h_bucket\"} dashboard:tokend_c",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "process_cpu_seconds_total",
            "tokend_a_total",
            "tokend_h_bucket"
        ]
    );
    let exported = Exported::parse(
        "# TYPE tokend_a_total counter\ntokend_a_total{x=\"y\"} 1\n\
         # TYPE tokend_h histogram\ntokend_h_bucket{le=\"+Inf\"} 1\ntokend_h_sum 1\ntokend_h_count 1\n",
    );
    for name in [
        "tokend_a_total",
        "tokend_h",
        "tokend_h_bucket",
        "tokend_h_sum",
        "tokend_h_count",
    ] {
        assert!(exported.has(name), "{name}");
    }
    for name in [
        "tokend_a",
        "tokend_a_total_bucket",
        "tokend_h_total",
        "tokend_b",
    ] {
        assert!(!exported.has(name), "{name}");
    }
}
