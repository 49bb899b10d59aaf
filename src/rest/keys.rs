//! Redis key names of the shared limiter, and the small wire formats the
//! Lua scripts speak. Pure: tested without Redis.
//!
//! Every key starts with one hash tag, `{<prefix>:<bot>}`, so that all keys
//! of one bot live in one Redis Cluster slot and every script touches one
//! slot (docs of Redis Cluster, "hash tags"). `<bot>` is the first 12 hex
//! digits of SHA-256 of the bot token, so two bots sharing a Redis never
//! share limits and the token never appears in Redis. The load on that one
//! slot is small (a few script calls per Discord request), which Redis
//! handles at tens of thousands per second.

use super::route::Route;

/// Which bucket a route uses, as the scripts name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BucketId {
    /// No hash learned yet: one request in flight per (route, major).
    Discovery,
    /// The route sends no rate-limit headers: only the global limit.
    NoLimit,
    /// The route's hash keeps changing: a route-scoped bucket.
    Cycling,
    /// The learned `X-RateLimit-Bucket`.
    Hash(String),
}

impl BucketId {
    /// The form the scripts use: `''`, `'-'`, `'~'` or `'h:<hash>'`.
    #[must_use]
    pub fn wire(&self) -> String {
        match self {
            BucketId::Discovery => String::new(),
            BucketId::NoLimit => "-".to_owned(),
            BucketId::Cycling => "~".to_owned(),
            BucketId::Hash(h) => format!("h:{h}"),
        }
    }

    /// Parses the scripts' form.
    #[must_use]
    pub fn from_wire(s: &str) -> BucketId {
        match s {
            "" => BucketId::Discovery,
            "-" => BucketId::NoLimit,
            "~" => BucketId::Cycling,
            other => BucketId::Hash(other.strip_prefix("h:").unwrap_or(other).to_owned()),
        }
    }

    /// A short label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            BucketId::Discovery => "discovery",
            BucketId::NoLimit => "no_limit",
            BucketId::Cycling => "cycling",
            BucketId::Hash(_) => "learned",
        }
    }
}

/// The key names of one bot's limiter.
#[derive(Debug, Clone)]
pub struct Keys {
    tag: String,
}

/// The 15 keys of acquire.lua, in order.
pub type AcquireKeys = [String; 15];

/// The 13 keys of release.lua, in order.
pub type ReleaseKeys = [String; 13];

impl Keys {
    /// Keys under `{<prefix>:<digest of token>}`.
    #[must_use]
    pub fn new(prefix: &str, token: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut bot = String::with_capacity(12);
        for b in &digest.as_ref()[..6] {
            use std::fmt::Write as _;
            let _ = write!(bot, "{b:02x}");
        }
        Self {
            tag: format!("{{{prefix}:{bot}}}"),
        }
    }

    /// The hash tag, `{prefix:bot}`: every key starts with it.
    #[must_use]
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The route map of `route`.
    #[must_use]
    pub fn route(&self, route: &Route) -> String {
        format!("{}:r:{}", self.tag, route.key)
    }

    /// The log (or discovery lease) of `route`'s bucket `bucket`.
    #[must_use]
    pub fn bucket(&self, route: &Route, bucket: &BucketId) -> String {
        match bucket {
            BucketId::Discovery | BucketId::NoLimit => {
                format!("{}:d:{}:{}", self.tag, route.key, route.major)
            }
            BucketId::Cycling => format!("{}:b:~{}:{}", self.tag, route.key, route.major),
            BucketId::Hash(h) => format!("{}:b:{h}:{}", self.tag, route.major),
        }
    }

    fn major_key(&self, kind: &str, route: &Route) -> String {
        format!("{}:{kind}:{}", self.tag, route.major)
    }

    fn global(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.tag)
    }

    /// The replica heartbeat set.
    #[must_use]
    pub fn replicas(&self) -> String {
        self.global("reps")
    }

    /// acquire.lua's keys for `route` expected in `bucket`.
    #[must_use]
    pub fn acquire(&self, route: &Route, bucket: &BucketId) -> AcquireKeys {
        let log = self.bucket(route, bucket);
        [
            self.route(route),
            log.clone(),
            format!("{log}:q"),
            format!("{log}:qx"),
            format!("{log}:x"),
            self.global("g"),
            self.global("gq"),
            self.global("gqx"),
            self.global("gb"),
            self.major_key("s", route),
            self.global("tok"),
            self.global("inv"),
            self.replicas(),
            self.major_key("wd", route),
            self.bucket(route, &BucketId::Discovery),
        ]
    }

    /// The sliding log of `bucket`; buckets without one (discovery, no
    /// limit) get a name that never holds data, so scripts may touch it
    /// as a ZSET.
    fn log(&self, route: &Route, bucket: &BucketId) -> String {
        match bucket {
            BucketId::Discovery | BucketId::NoLimit => {
                format!("{}:n:{}:{}", self.tag, route.key, route.major)
            }
            _ => self.bucket(route, bucket),
        }
    }

    /// release.lua's keys for `route`, whose response named `hash` (or
    /// none: then the bucket acquired, `acquired`, takes 429 blocks).
    #[must_use]
    pub fn release(&self, route: &Route, hash: Option<&str>, acquired: &BucketId) -> ReleaseKeys {
        let log = match hash {
            Some(h) => self.bucket(route, &BucketId::Hash(h.to_owned())),
            None => self.log(route, acquired),
        };
        let cycling = self.bucket(route, &BucketId::Cycling);
        [
            self.route(route),
            self.bucket(route, &BucketId::Discovery),
            log.clone(),
            format!("{log}:x"),
            cycling.clone(),
            format!("{cycling}:x"),
            self.global("gb"),
            self.major_key("s", route),
            self.global("tok"),
            self.global("inv"),
            self.major_key("wd", route),
            self.global("g"),
            self.log(route, acquired),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route::parse("POST", "/channels/42/messages", 0).unwrap()
    }

    #[test]
    fn every_key_carries_the_tag_and_no_token() {
        let keys = Keys::new("arrakis", "secret.token.value");
        assert!(keys.tag().starts_with("{arrakis:") && keys.tag().ends_with('}'));
        assert_eq!(keys.tag().len(), "{arrakis:}".len() + 12);
        let r = route();
        for k in keys
            .acquire(&r, &BucketId::Hash("abc".into()))
            .iter()
            .chain(keys.release(&r, Some("abc"), &BucketId::Discovery).iter())
        {
            assert!(k.starts_with(keys.tag()), "{k}");
            assert!(!k.contains("secret"), "{k}");
        }
        // Other tokens, other tags.
        assert_ne!(Keys::new("arrakis", "other").tag(), keys.tag());
    }

    #[test]
    fn bucket_keys_combine_hash_and_major() {
        let keys = Keys::new("p", "t");
        let r = route();
        let tag = keys.tag().to_owned();
        assert_eq!(
            keys.bucket(&r, &BucketId::Hash("abc".into())),
            format!("{tag}:b:abc:c:42")
        );
        assert_eq!(
            keys.bucket(&r, &BucketId::Discovery),
            format!("{tag}:d:POST /channels/:id/messages:c:42")
        );
        assert_eq!(
            keys.bucket(&r, &BucketId::Cycling),
            format!("{tag}:b:~POST /channels/:id/messages:c:42")
        );
    }

    #[test]
    fn bucket_ids_round_trip() {
        for id in [
            BucketId::Discovery,
            BucketId::NoLimit,
            BucketId::Cycling,
            BucketId::Hash("41f9b2".into()),
        ] {
            assert_eq!(BucketId::from_wire(&id.wire()), id);
        }
    }
}
