//! A community's settings document (`communities.settings`, keys listed in
//! migrations/0001_initial.sql), parsed once per use.

use serde_json::Value;

use super::ranking::{RoleMap, Thresholds};
use crate::worker::chain::Address;

/// What the Sietch logic reads from a community's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ERC-20 contract, once `/setup` gave it.
    pub token: Option<Address>,
    /// The EVM chain id (informational: the RPC endpoints decide).
    pub chain_id: Option<u64>,
    /// First block scanned for `Transfer` logs.
    pub start_block: u64,
    /// Token decimals (18 unless set).
    pub decimals: u32,
    /// Tier minimums in raw units.
    pub thresholds: Thresholds,
    /// Discord roles of the tiers and titles.
    pub roles: RoleMap,
    /// The community's own JSON-RPC endpoints (comma-separated), if any.
    pub rpc_urls: Option<String>,
}

impl Settings {
    /// Parses `doc`; a malformed key is an error naming it, so `/setup`
    /// can refuse it and the sync can report it.
    ///
    /// # Errors
    ///
    /// What is wrong, naming the key.
    pub fn parse(doc: &Value) -> Result<Self, String> {
        let token = match doc.get("token") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or("token: not a string")?
                    .parse::<Address>()
                    .map_err(|e| format!("token: {e}"))?,
            ),
        };
        let uint = |key: &str| -> Result<Option<u64>, String> {
            match doc.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("{key}: not a non-negative integer")),
            }
        };
        let decimals = uint("decimals")?.unwrap_or(18);
        if decimals > 36 {
            return Err("decimals: at most 36".to_owned());
        }
        let decimals = u32::try_from(decimals).unwrap_or(18);
        Ok(Self {
            token,
            chain_id: uint("chain_id")?,
            start_block: uint("start_block")?.unwrap_or(0),
            decimals,
            thresholds: Thresholds::from_settings(doc.get("thresholds"), decimals)
                .map_err(|e| format!("thresholds: {e}"))?,
            roles: RoleMap::from_settings(doc.get("roles")).map_err(|e| format!("roles: {e}"))?,
            rpc_urls: match doc.get("rpc_urls") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(list)) => Some(
                    list.iter()
                        .map(|u| u.as_str().ok_or("rpc_urls: not a list of strings"))
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                ),
                Some(_) => return Err("rpc_urls: not a list of URLs".to_owned()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_settings_mean_defaults_and_no_token() {
        let s = Settings::parse(&json!({})).unwrap();
        assert!(s.token.is_none());
        assert_eq!(s.decimals, 18);
        assert_eq!(s.start_block, 0);
    }

    #[test]
    fn a_malformed_key_is_named() {
        let e = Settings::parse(&json!({ "token": "0x12" })).unwrap_err();
        assert!(e.starts_with("token:"), "{e}");
        let e = Settings::parse(&json!({ "decimals": 99 })).unwrap_err();
        assert!(e.starts_with("decimals:"), "{e}");
        let e = Settings::parse(&json!({ "roles": { "emperor": "1" } })).unwrap_err();
        assert!(e.starts_with("roles:"), "{e}");
    }
}
