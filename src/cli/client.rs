//! `dogetower channels list|show|close` and `dogetower status`: the API's
//! client for operators, with readable tables by default and `--json`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::Context;

/// Where the API is and who is asking.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Base URL of the tower's API [default: http://<api.listen> from the config].
    #[arg(long, global = true, env = "DOGETOWER_API_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The merchant's API token.
    #[arg(
        long,
        global = true,
        env = "DOGETOWER_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChannelsCommand {
    /// A page of the merchant's channels.
    List {
        /// Only channels in this state (pending_funding, open, closing, closed, refunded, failed).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this cursor (from the previous page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One channel.
    Show { id: String },
    /// Broadcast the channel's latest state now.
    Close { id: String },
}

pub(crate) struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(api: &ApiArgs, ctx: &Context) -> anyhow::Result<Client> {
        let base = match &api.url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", ctx.config().context("no --url given")?.api.listen),
        };
        let from_config = ctx
            .config()
            .ok()
            .and_then(|c| c.api.token.as_ref())
            .map(|t| t.expose().to_string());
        let token = api
            .token
            .clone()
            .or(from_config)
            .context("an API token is needed: --token, DOGETOWER_API_TOKEN or api.token in the config")?;
        Ok(Client {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    /// A request whose error answer is an error here.
    async fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let body = (method == reqwest::Method::POST).then(|| serde_json::json!({}));
        let (status, body) = self.send(method, path, body.as_ref()).await?;
        if !(200..300).contains(&status) {
            anyhow::bail!("{}", error_text(status, &body));
        }
        Ok(body)
    }

    /// A request with an optional JSON body; the answer's status and JSON,
    /// whatever the status.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the tower at {}", self.base))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .context("the tower answered something that is not JSON")?;
        Ok((status, body))
    }
}

/// An API error answer as one line: `code (status): message`.
pub(crate) fn error_text(status: u16, body: &Value) -> String {
    format!(
        "{} ({status}): {}",
        body["error"]["code"].as_str().unwrap_or("error"),
        body["error"]["message"].as_str().unwrap_or("")
    )
}

pub fn channels(command: ChannelsCommand, api: &ApiArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let client = Client::new(api, ctx)?;
    super::block_on(async move {
        let (body, render): (Value, fn(&Value) -> String) = match command {
            ChannelsCommand::List { state, limit, cursor } => {
                let mut path = format!("/v1/channels?limit={limit}");
                if let Some(state) = state {
                    path += &format!("&state={state}");
                }
                if let Some(cursor) = cursor {
                    path += &format!("&cursor={cursor}");
                }
                (client.call(reqwest::Method::GET, &path).await?, channel_table)
            }
            ChannelsCommand::Show { id } => (
                client
                    .call(reqwest::Method::GET, &format!("/v1/channels/{id}"))
                    .await?,
                channel_details,
            ),
            ChannelsCommand::Close { id } => (
                client
                    .call(reqwest::Method::POST, &format!("/v1/channels/{id}/close"))
                    .await?,
                channel_details,
            ),
        };
        print(&body, api.json, render)
    })
}

pub fn status(api: &ApiArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let client = Client::new(api, ctx)?;
    super::block_on(async move {
        let body = client.call(reqwest::Method::GET, "/v1/status").await?;
        print(&body, api.json, status_table)
    })
}

fn print(body: &Value, json: bool, render: fn(&Value) -> String) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(body)?);
    } else {
        print!("{}", render(body));
    }
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out += &line(row);
    }
    out
}

fn channel_table(body: &Value) -> String {
    let rows = body["channels"]
        .as_array()
        .map(|channels| {
            channels
                .iter()
                .map(|c| {
                    [
                        "id",
                        "state",
                        "capacity",
                        "merchant_amount",
                        "sequence",
                        "deadline_height",
                    ]
                    .iter()
                    .map(|k| text(&c[*k]))
                    .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = table(&["ID", "STATE", "CAPACITY", "MERCHANT", "SEQ", "DEADLINE"], rows);
    if let Some(next) = body["next_cursor"].as_str() {
        out += &format!("more: --cursor {next}\n");
    }
    out
}

fn channel_details(c: &Value) -> String {
    let mut rows: Vec<Vec<String>> = [
        "id",
        "state",
        "locktime",
        "locktime_kind",
        "deadline_height",
        "capacity",
        "merchant_amount",
        "sequence",
        "close_txid",
        "close_confirmations",
        "payer_pubkey",
        "merchant_pubkey",
        "created_at",
        "updated_at",
    ]
    .iter()
    .map(|k| vec![k.to_string(), text(&c[*k])])
    .collect();
    for f in c["funding"].as_array().into_iter().flatten() {
        rows.push(vec![
            "funding".into(),
            format!(
                "{} {} koinu, {}, {} confirmations",
                text(&f["outpoint"]),
                text(&f["value"]),
                text(&f["status"]),
                text(&f["confirmations"])
            ),
        ]);
    }
    table(&["FIELD", "VALUE"], rows)
}

fn status_table(s: &Value) -> String {
    let mut rows: Vec<Vec<String>> = [
        "network",
        "node_reachable",
        "node_height",
        "processed_height",
        "caught_up",
        "zmq_configured",
        "zmq_seconds_since_last_message",
        "nearest_deadline_height",
        "nearest_deadline_channel",
    ]
    .iter()
    .map(|k| vec![k.to_string(), text(&s[*k])])
    .collect();
    if let Some(states) = s["channels_by_state"].as_object() {
        for (state, count) in states {
            rows.push(vec![format!("channels {state}"), text(count)]);
        }
    }
    table(&["", ""], rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_show_missing_values_as_dashes() {
        let page = json!({"channels": [
            {"id": "2Nabc", "state": "open", "capacity": 1000, "merchant_amount": 5, "sequence": 1, "deadline_height": 190},
            {"id": "2Nlonger", "state": "closing", "capacity": 20, "merchant_amount": null, "sequence": 2, "deadline_height": 7},
        ], "next_cursor": "2"});
        let out = channel_table(&page);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID        STATE    CAPACITY  MERCHANT  SEQ  DEADLINE");
        assert_eq!(lines[1], "2Nabc     open     1000      5         1    190");
        assert_eq!(lines[2], "2Nlonger  closing  20        -         2    7");
        assert_eq!(lines[3], "more: --cursor 2");
    }
}
