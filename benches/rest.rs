//! The REST proxy's costs: route → bucket key (pure), one limiter
//! acquire + release against the local Redis (two script round trips), and
//! the proxy's overhead per request on loopback against a direct call to
//! the simulator.
//!
//! Run: `cargo bench --bench rest` (needs Redis on 127.0.0.1:6379). Besides
//! criterion's means it prints the limiter's p50/p99 from 2,000 timed
//! acquire + release pairs. Figures go in docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrakis::config::Secret;
use arrakis::rest::forward::RestClient;
use arrakis::rest::headers::RateLimitHeaders;
use arrakis::rest::keys::{BucketId, Keys};
use arrakis::rest::limiter::{Class, Limiter, LimiterConfig, Outcome};
use arrakis::rest::metrics::ProxyMetrics;
use arrakis::rest::route::Route;
use arrakis::rest::server::{ProxyServer, ServerConfig};
use arrakis_loadtest::sim::{RestSimConfig, SimConfig, Simulator};
use bytes::Bytes;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const REDIS: &str = "redis://127.0.0.1:6379/";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn limiter(prefix: &str) -> Arc<Limiter> {
    Arc::new(
        Limiter::new(
            REDIS,
            "bench-token",
            LimiterConfig {
                prefix: prefix.to_owned(),
                global_limit: 1_000_000,
                margin: Duration::from_millis(100),
                local_fraction: 0.5,
                invalid_limit: 10_000,
                redis_timeout: Duration::from_secs(1),
            },
            Arc::new(ProxyMetrics::new()),
        )
        .expect("limiter"),
    )
}

async fn on_redis(limiter: &Arc<Limiter>) {
    tokio::spawn(limiter.clone().maintain());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while limiter.degraded() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis must run on 127.0.0.1:6379"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn delete_prefix(rt: &tokio::runtime::Runtime, prefix: &str) {
    rt.block_on(async {
        let client = redis::Client::open(REDIS).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    });
}

fn route_to_key(c: &mut Criterion) {
    let keys = Keys::new("arrakis", "bench-token");
    let now = 1_800_000_000_000;
    let paths = [
        ("POST", "/channels/123456789012345678/messages"),
        (
            "DELETE",
            "/channels/123456789012345678/messages/1234567890123456789",
        ),
        (
            "PUT",
            "/channels/123456789012345678/messages/1234567890123456789/reactions/%F0%9F%91%8D/@me",
        ),
        (
            "PATCH",
            "/webhooks/123456789012345678/aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OnRva2Vu/messages/@original",
        ),
        (
            "GET",
            "/guilds/123456789012345678/members/123456789012345678",
        ),
    ];
    let hash = BucketId::Hash("80c17d2f203122d936070c88c8d10f33".into());
    c.bench_function("route_to_bucket_key", |b| {
        let mut i = 0;
        b.iter(|| {
            let (method, path) = paths[i % paths.len()];
            i += 1;
            let route = Route::parse(black_box(method), black_box(path), now).unwrap();
            black_box(keys.bucket(&route, &hash))
        });
    });
}

fn learned(limit: u32) -> Outcome {
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        "x-ratelimit-bucket",
        HeaderValue::from_static("benchbucket"),
    );
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(limit - 1));
    headers.insert("x-ratelimit-reset-after", HeaderValue::from_static("1.000"));
    Outcome {
        status: 200,
        headers: RateLimitHeaders::parse(&headers),
        limited: None,
    }
}

fn limiter_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("arrakis-bench-{:08x}", rand::random::<u32>());
    let limiter = {
        let _runtime = rt.enter();
        limiter(&prefix)
    };
    rt.block_on(on_redis(&limiter));
    // A learned bucket with room for everything the bench sends.
    let route = Route::parse("POST", "/channels/42/messages", 0).unwrap();
    let outcome = learned(1_000_000);
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let p = limiter
            .acquire(&route, Class::Normal, 1, deadline)
            .await
            .unwrap();
        limiter.release(&route, &p, &outcome).await;
    });
    let mut ticket = 10u64;
    c.bench_function("limiter_acquire_release", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    ticket += 1;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    let p = limiter
                        .acquire(&route, Class::Normal, ticket, deadline)
                        .await
                        .unwrap();
                    limiter.release(&route, &p, &outcome).await;
                }
                started.elapsed()
            })
        });
    });
    // Percentiles, which criterion does not report.
    let mut samples: Vec<Duration> = rt.block_on(async {
        let mut out = Vec::with_capacity(2_000);
        for i in 0..2_000u64 {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let p = limiter
                .acquire(&route, Class::Normal, 1_000_000 + i, deadline)
                .await
                .unwrap();
            limiter.release(&route, &p, &outcome).await;
            out.push(started.elapsed());
        }
        out
    });
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    eprintln!(
        "limiter acquire+release over {} pairs: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        pick(0.50),
        pick(0.99),
        samples[samples.len() - 1]
    );
    delete_prefix(&rt, &prefix);
}

fn proxy_overhead(c: &mut Criterion) {
    let rt = runtime();
    let prefix = format!("arrakis-bench-{:08x}", rand::random::<u32>());
    let (sim, proxy_base) = rt.block_on(async {
        let sim = Simulator::start(SimConfig {
            rest: RestSimConfig {
                global_limit: 1_000_000,
                ..RestSimConfig::default()
            },
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let metrics = Arc::new(ProxyMetrics::new());
        let limiter = limiter(&prefix);
        on_redis(&limiter).await;
        let token = Secret::new("sim-token");
        let rest = Arc::new(RestClient::new(
            &sim.api_base(),
            &token,
            limiter,
            metrics.clone(),
        ));
        let server = Arc::new(ProxyServer::new(
            rest,
            ServerConfig {
                secret: None,
                default_deadline: Duration::from_secs(10),
                interaction_deadline: Duration::from_millis(2_500),
                max_body: 1 << 20,
            },
            metrics,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api/v10", listener.local_addr().unwrap());
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _keep = _stop;
            server.serve(listener, stopped).await;
        });
        (sim, base)
    });
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    // `GET /channels/{id}/pins` sends no rate-limit headers: after three
    // answers the limiter counts it globally only, so the bench measures
    // the proxy, not a bucket.
    let get = |base: String, auth: bool| {
        let client = client.clone();
        async move {
            let mut req = hyper::Request::get(format!("{base}/channels/1/pins"));
            if auth {
                req = req.header("authorization", "Bot sim-token");
            }
            let resp = client
                .request(req.body(Full::new(Bytes::new())).unwrap())
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.into_body().collect().await.unwrap();
        }
    };
    let direct = sim.api_base();
    rt.block_on(async {
        for _ in 0..5 {
            get(proxy_base.clone(), false).await;
        }
    });
    let mut group = c.benchmark_group("proxy_overhead");
    for (name, base, auth) in [
        ("direct_to_simulator", direct.clone(), true),
        ("through_proxy", proxy_base.clone(), false),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        get(base.clone(), auth).await;
                    }
                    started.elapsed()
                })
            });
        });
    }
    group.finish();
    rt.block_on(sim.shutdown());
    delete_prefix(&rt, &prefix);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = route_to_key, limiter_round_trip, proxy_overhead
}
criterion_main!(benches);
