//! A real Prometheus scrapes a tower that runs a devnet scenario and
//! evaluates every PromQL expression of the dashboards and the alert rules
//! through its HTTP API: every dashboard query returns data, every rule
//! expression evaluates, and every metric a rule reads has data.
//! Needs the `prometheus` binary (Debian's package; `.ci/run` installs it).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{free_port, kill, repo_path, wait_for, Shop};

/// Every `"expr"` string anywhere in a dashboard.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) if !expr.trim().is_empty() => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The `expr:` values of a rules file (single-line or `|`/`>` blocks).
fn rule_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.trim_start().strip_prefix("expr:") {
            let indent = line.len() - line.trim_start().len();
            let rest = rest.trim();
            if rest.starts_with('|') || rest.starts_with('>') {
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    block.push(next.trim());
                    i += 1;
                }
                out.push(block.join(" "));
            } else {
                out.push(rest.trim_matches(|c| c == '"' || c == '\'').to_string());
            }
        }
        i += 1;
    }
    out
}

/// Metric names an expression reads (`dogetower_*` and `up`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("dogetower_") && !names.contains(&word.to_string()) {
            names.push(word.to_string());
        }
    }
    names
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn start_prometheus(target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rules = repo_path("deploy/prometheus/dogetower.rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: dogetower\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display()
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the prometheus binary (apt-get install prometheus; .ci/run installs it)");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

async fn try_query(prometheus: &Prometheus, expr: &str) -> Result<Value, reqwest::Error> {
    reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", expr)])
        .send()
        .await?
        .json()
        .await
}

async fn query(prometheus: &Prometheus, expr: &str) -> Value {
    try_query(prometheus, expr)
        .await
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_expression_evaluates_on_a_working_tower() {
    // A working tower: a channel registered, paid, closed and confirmed.
    let shop = Shop::start().await;
    let ch = shop.channel(40, false).await;
    shop.tower
        .post("/v1/channels", json!({"psbt": ch.announcement()}))
        .await;
    shop.devnet.mine(1).await;
    shop.tower
        .post(
            &format!("/v1/channels/{}/payments", ch.id),
            json!({"psbt": ch.payment(100_000_000)}),
        )
        .await;
    shop.tower
        .post(&format!("/v1/channels/{}/close", ch.id), json!({}))
        .await;
    shop.devnet.mine(4).await;
    shop.tower.wait_processed(shop.devnet.height().await).await;

    let target = shop
        .tower
        .metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let prometheus = start_prometheus(&target);
    wait_for(
        "Prometheus to scrape the tower",
        Duration::from_secs(60),
        async || {
            // Prometheus itself may still be starting: no answer yet is fine.
            let answer = try_query(&prometheus, "up{job=\"dogetower\"}").await.ok()?;
            (answer["data"]["result"][0]["value"][1] == "1").then_some(())
        },
    )
    .await;
    // A few more blocks and scrapes, so rates have two points and more.
    for _ in 0..3 {
        shop.devnet.mine(1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    let mut exprs = Vec::new();
    for entry in std::fs::read_dir(repo_path("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            dashboard_exprs(&dashboard, &mut exprs);
        }
    }
    assert!(
        exprs.len() >= 10,
        "the dashboards have their panels ({} queries)",
        exprs.len()
    );
    for expr in &exprs {
        let concrete = expr
            .replace("$instance", &target)
            .replace("$job", "dogetower")
            .replace("${job}", "dogetower")
            .replace("${instance}", &target)
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "5s")
            .replace("$__range", "5m");
        let answer = query(&prometheus, &concrete).await;
        assert_eq!(answer["status"], "success", "{concrete}: {answer}");
        let result = &answer["data"]["result"];
        assert!(
            result.as_array().is_some_and(|r| !r.is_empty()) || result.is_number() || result.is_string(),
            "dashboard query returns no data: {concrete}"
        );
    }

    let rules =
        rule_exprs(&std::fs::read_to_string(repo_path("deploy/prometheus/dogetower.rules.yml")).unwrap());
    assert!(
        rules.len() >= 8,
        "eight alert rules at least ({} found)",
        rules.len()
    );
    for expr in &rules {
        let answer = query(&prometheus, expr).await;
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        for name in metric_names(expr) {
            let data = query(&prometheus, &name).await;
            assert!(
                data["data"]["result"].as_array().is_some_and(|r| !r.is_empty()),
                "rule reads {name}, which has no data"
            );
        }
    }
}

#[test]
fn rule_expressions_are_found_in_both_yaml_forms() {
    let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: |\n          a > 1\n          and b\n        for: 1m\n";
    assert_eq!(
        rule_exprs(text),
        vec!["up == 0".to_string(), "a > 1 and b".to_string()]
    );
    assert_eq!(
        metric_names("rate(dogetower_x_total[5m]) > dogetower_y"),
        vec!["dogetower_x_total", "dogetower_y"]
    );
}
