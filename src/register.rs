//! `arrakis register-commands`: registers Sietch's slash commands with
//! Discord as global commands, through the REST proxy (which holds the
//! token), by one bulk overwrite (`PUT /applications/{id}/commands`).
//!
//! The overwrite replaces the whole set, so running it again with the same
//! definitions changes nothing and commands removed from the registry
//! disappear from Discord. The definitions are
//! [`registry::definitions`](crate::worker::sietch::registry::definitions),
//! the same ones the worker routes by.

use std::process::ExitCode;
use std::time::Duration;

use hyper::Method;

use crate::config::Secret;
use crate::proxy::parse_api_base;
use crate::worker::rest::{Priority, ProxyClient};
use crate::worker::sietch::registry;

/// Options of `arrakis register-commands`; each is also an environment
/// variable.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    /// REST base to call: the REST proxy.
    #[arg(long, env = "ARRAKIS_REST_URL", value_name = "ARRAKIS_REST_URL", default_value = "http://127.0.0.1:8090/api/v10", value_parser = parse_api_base)]
    pub rest_url: String,
    /// Secret presented to the REST proxy.
    #[arg(
        long,
        env = "ARRAKIS_PROXY_SECRET",
        value_name = "ARRAKIS_PROXY_SECRET",
        hide_env_values = true
    )]
    pub proxy_secret: Option<Secret>,
    /// The bot's application id; read from `GET /applications/@me` when
    /// not given.
    #[arg(
        long,
        env = "ARRAKIS_APPLICATION_ID",
        value_name = "ARRAKIS_APPLICATION_ID"
    )]
    pub application_id: Option<u64>,
    /// Print the definitions instead of sending them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The proxy could not be reached.
    #[error("cannot reach the REST proxy at {url}: {why}")]
    Unreachable {
        /// The REST base.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// Discord (or the proxy) refused.
    #[error("{what} answered {status}: {body}")]
    Refused {
        /// Which request.
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// The response body (Discord's error, never the token).
        body: String,
    },
}

const DEADLINE: Duration = Duration::from_secs(30);

/// Registers the commands and prints how many Discord now has.
///
/// # Errors
///
/// [`RegisterError`].
pub async fn run(args: RegisterArgs) -> Result<ExitCode, RegisterError> {
    let body = registry::definitions();
    if args.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rest = ProxyClient::new(&args.rest_url, args.proxy_secret.clone());
    let unreachable = |e: crate::worker::rest::RestError| RegisterError::Unreachable {
        url: args.rest_url.clone(),
        why: e.to_string(),
    };
    let application = match args.application_id {
        Some(id) => id,
        None => {
            let resp = rest
                .send(
                    Method::GET,
                    "/applications/@me",
                    None,
                    DEADLINE,
                    Priority::Background,
                    None,
                )
                .await
                .map_err(unreachable)?;
            resp.json()
                .filter(|_| resp.status.is_success())
                .and_then(|v| v.get("id")?.as_str()?.parse().ok())
                .ok_or_else(|| RegisterError::Refused {
                    what: "GET /applications/@me",
                    status: resp.status.as_u16(),
                    body: String::from_utf8_lossy(&resp.body).into_owned(),
                })?
        }
    };
    let resp = rest
        .send(
            Method::PUT,
            &format!("/applications/{application}/commands"),
            Some(&body),
            DEADLINE,
            Priority::Background,
            None,
        )
        .await
        .map_err(unreachable)?;
    if !resp.status.is_success() {
        return Err(RegisterError::Refused {
            what: "PUT /applications/{id}/commands",
            status: resp.status.as_u16(),
            body: String::from_utf8_lossy(&resp.body).into_owned(),
        });
    }
    let count = resp
        .json()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    println!("registered {count} global commands for application {application}");
    Ok(ExitCode::SUCCESS)
}
