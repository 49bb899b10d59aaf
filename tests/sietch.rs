//! Sietch on the workers, end to end through the contract: interactions
//! and events published to RabbitMQ as the ingestor would, answered by
//! `arrakis work` through `arrakis proxy` to the Discord simulator, with
//! the chain simulator, Redis and Postgres behind PgBouncer.
//!
//! Every assertion is on what Discord (the simulator) received — callback
//! types, flags, content, role changes, DMs — or on the database.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use arrakis::worker::sietch::signature;
use arrakis_loadtest::chain::EndpointMode;
use arrakis_loadtest::sim::{InteractionSpec, RoleChange};
use serde_json::{Value, json};

use support::sietch::{
    ADMIN, FEDAYKIN_ROLE, FORMER_NAIB_ROLE, NAIB_ROLE, Sietch, TAQWA_ROLE, TOKEN, address,
    settings, string_option, sub, tokens, user_option, wallet,
};

const GUILD: u64 = 910_000_000_000_000_001;
fn user(n: u64) -> u64 {
    400_000_000_000_000_000 + n
}

/// Links `wallet` to `user` as a completed verification would.
async fn link(t: &Sietch, community: i64, user: u64, wallet: &str) {
    t.sql(&format!(
        "INSERT INTO profiles (community_id, user_id, onboarded_at) VALUES ({community}, {user}, now()) \
         ON CONFLICT DO NOTHING; \
         INSERT INTO wallets (community_id, address, user_id) VALUES ({community}, '{wallet}', {user})"
    ))
    .await;
}

/// `/register-waitlist register wallet` by `user`.
fn register(wallet: &str, user: u64) -> InteractionSpec {
    cmd(
        "register-waitlist",
        sub("register", json!([string_option("wallet", wallet)])),
    )
    .user(user)
}

/// A click on button `id` by `user`.
fn click(id: &str, user: u64) -> InteractionSpec {
    InteractionSpec::button(id).guild(GUILD).user(user)
}

/// A choice of `values` in select menu `id` by `user`.
fn pick(id: &str, values: &[&str], user: u64) -> InteractionSpec {
    InteractionSpec::select(id, values).guild(GUILD).user(user)
}

/// `/water-share share member` from `from` to `to`.
fn share(from: u64, to: u64) -> InteractionSpec {
    cmd(
        "water-share",
        sub("share", json!([user_option("member", to)])),
    )
    .user(from)
}

fn cmd(name: &str, options: Value) -> InteractionSpec {
    InteractionSpec::command(name, options).guild(GUILD)
}

async fn sync(t: &Sietch) -> String {
    let a = t
        .interact(cmd("admin-eligibility", sub("sync", json!([]))).permissions(ADMIN))
        .await;
    assert!(a.ephemeral(), "{a:?}");
    a.content()
}

fn changes_since(t: &Sietch, n: usize) -> Vec<RoleChange> {
    t.sim.role_changes().into_iter().skip(n).collect()
}

fn change(user: u64, role: u64, added: bool) -> (u64, u64, bool) {
    (user, role, added)
}

fn summary(changes: &[RoleChange]) -> BTreeSet<(u64, u64, bool)> {
    changes
        .iter()
        .map(|c| (c.user_id, c.role_id, c.added))
        .collect()
}

/// Holders 1..=80 with balances 1000, 990, … (so rank n holds 1010 − 10n),
/// a burner who held the most, and overrides: holder 5 excluded, an
/// empty wallet included.
async fn populate(t: &Sietch) -> i64 {
    let community = t.community(GUILD, settings()).await;
    for n in 1..=80u64 {
        t.chain
            .mint(address(&wallet(n)), tokens(1010 - 10 * u128::from(n)));
    }
    let burner = wallet(900);
    t.chain.mint(address(&burner), tokens(5000));
    t.chain.burn(address(&burner), tokens(1));
    t.sql(&format!(
        "INSERT INTO overrides (community_id, address, kind) VALUES \
         ({community}, '{}', 'exclude'), ({community}, '{}', 'include')",
        wallet(5),
        wallet(901)
    ))
    .await;
    community
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_ranks_seats_and_changes_exactly_the_roles_that_changed() {
    let t = Sietch::start(&[]).await;
    let community = populate(&t).await;
    // Members: the top holder, a Fedaykin, a waitlist holder, the burner,
    // the excluded holder and the included empty wallet.
    let members = [
        (user(1), wallet(1)),
        (user(2), wallet(20)),
        (user(3), wallet(75)),
        (user(4), wallet(900)),
        (user(5), wallet(5)),
        (user(6), wallet(901)),
    ];
    for (u, w) in &members {
        link(&t, community, *u, w).await;
        t.sim.add_member(GUILD, *u, &[]);
    }

    let report = sync(&t).await;
    assert!(report.starts_with("Synced at block"), "{report}");
    assert!(report.contains("81 holders"), "{report}");

    // Ranks: the burner and holder 5 are out, so holder 1 is rank 1,
    // holder 6 rank 5, holder 20 rank 19, holder 75 rank 74.
    let ranks = t
        .sql(&format!(
            "SELECT address, rank, tier FROM eligibility WHERE community_id = {community} \
             AND address IN ('{}', '{}', '{}', '{}', '{}', '{}', '{}') ORDER BY address",
            wallet(1),
            wallet(5),
            wallet(6),
            wallet(20),
            wallet(75),
            wallet(900),
            wallet(901)
        ))
        .await;
    let got: Vec<(String, Option<i32>, Option<String>)> = ranks
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (wallet(1), Some(1), Some("naib".into())),
            (wallet(6), Some(5), Some("naib".into())),
            (wallet(20), Some(19), Some("fedaykin".into())),
            (wallet(75), Some(74), Some("qanat".into())),
            (wallet(901), None, Some("fedaykin".into())),
        ],
        "burner {} and excluded {} are not ranked",
        wallet(900),
        wallet(5)
    );
    let seats = t
        .sql(&format!(
            "SELECT seat, user_id FROM naib_seats WHERE community_id = {community}"
        ))
        .await;
    let seats: Vec<(i32, i64)> = seats.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(seats, vec![(1, user(1) as i64)]);

    // Exactly: Naib for holder 1, Fedaykin for holder 20 and for the
    // included wallet; holder 75 is qanat (unmapped here): nothing; the
    // burner and the excluded holder get nothing.
    let first = t.sim.role_changes();
    assert_eq!(
        summary(&first),
        BTreeSet::from([
            change(user(1), NAIB_ROLE, true),
            change(user(2), FEDAYKIN_ROLE, true),
            change(user(6), FEDAYKIN_ROLE, true),
        ]),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .all(|c| c.guild_id == GUILD && c.reason.as_deref() == Some("Sietch eligibility sync")),
        "{first:?}"
    );
    assert_eq!(t.sim.member_roles(GUILD, user(1)), Some(vec![NAIB_ROLE]));
    let dms = t.sim.messages_sent();
    assert!(
        dms.iter()
            .any(|m| m.recipient_id == Some(user(1)) && m.content.contains("Naib seat 1")),
        "{dms:?}"
    );

    // A second run with no chain change sends nothing at all.
    let rest_before = t.sim.rest_requests().len();
    let dms_before = t.sim.messages_sent().len();
    let report = sync(&t).await;
    assert!(report.contains("0 role changes, 0 DMs"), "{report}");
    assert!(changes_since(&t, first.len()).is_empty());
    assert_eq!(t.sim.messages_sent().len(), dms_before);
    let bot_calls: Vec<_> = t
        .sim
        .rest_requests()
        .into_iter()
        .skip(rest_before)
        .filter(|r| !r.path.contains("/interactions/") && !r.path.contains("/webhooks/"))
        .collect();
    assert!(bot_calls.is_empty(), "{bot_calls:?}");

    // A newcomer with more tokens: holder 20's owner buys to the top and
    // takes the lowest free seat; holder 1 stays seated.
    t.chain.mint(address(&wallet(20)), tokens(10_000));
    let n = t.sim.role_changes().len();
    sync(&t).await;
    assert_eq!(
        summary(&changes_since(&t, n)),
        BTreeSet::from([
            change(user(2), NAIB_ROLE, true),
            change(user(2), FEDAYKIN_ROLE, false),
        ])
    );
    // Seven richer holders push holder 1 (and 20's owner) out of the top
    // seven: both are bumped to Former Naib.
    for n in 0..7u64 {
        t.chain.mint(address(&wallet(500 + n)), tokens(50_000));
    }
    let n = t.sim.role_changes().len();
    sync(&t).await;
    assert_eq!(
        summary(&changes_since(&t, n)),
        BTreeSet::from([
            change(user(1), NAIB_ROLE, false),
            change(user(1), FEDAYKIN_ROLE, true),
            change(user(1), FORMER_NAIB_ROLE, true),
            change(user(2), NAIB_ROLE, false),
            change(user(2), FEDAYKIN_ROLE, true),
            change(user(2), FORMER_NAIB_ROLE, true),
        ])
    );
    let dms = t.sim.messages_sent();
    assert!(
        dms.iter()
            .any(|m| m.recipient_id == Some(user(1)) && m.content.contains("Former Naib")),
        "{dms:?}"
    );

    // An RPC outage: grace, nothing revoked, snapshot kept.
    for i in 0..3 {
        t.chain.set_mode(i, EndpointMode::Down);
    }
    let before = t
        .sql(&format!(
            "SELECT count(*)::text FROM eligibility WHERE community_id = {community}"
        ))
        .await[0]
        .get::<_, String>(0);
    let n = t.sim.role_changes().len();
    let report = sync(&t).await;
    assert!(report.contains("chain is unavailable"), "{report}");
    assert!(changes_since(&t, n).is_empty(), "nothing revoked in grace");
    t.wait_sql(
        &format!("SELECT in_grace::text FROM communities WHERE id = {community}"),
        "true",
    )
    .await;
    t.wait_sql(
        &format!("SELECT count(*)::text FROM eligibility WHERE community_id = {community}"),
        &before,
    )
    .await;
    // The chain is back: grace ends once the breakers let calls through
    // again (10 s).
    for i in 0..3 {
        t.chain.set_mode(i, EndpointMode::Healthy);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let report = sync(&t).await;
        if report.starts_with("Synced") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    t.wait_sql(
        &format!("SELECT in_grace::text FROM communities WHERE id = {community}"),
        "false",
    )
    .await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_accepts_a_valid_signature_and_refuses_the_rest() {
    let t = Sietch::start(&[]).await;
    let community = t.community(GUILD, settings()).await;
    let secret = [0x42u8; 32];
    let owner = signature::to_hex_address(&signature::address_of_secret(&secret).unwrap());
    t.chain.mint(address(&owner), tokens(2000));
    sync(&t).await;
    t.sim.add_member(GUILD, user(7), &[]);

    let start = |u: u64| cmd("verify", sub("start", json!([]))).user(u);
    let a = t.interact(start(user(7))).await;
    assert_eq!(a.callback_type(), 4);
    assert!(a.ephemeral());
    let content = a.content();
    let session = session_in(&content);
    assert!(content.contains(&format!("/verify/{session}")), "{content}");

    let (status, body) = support::http_get(&t.worker.http, &format!("/verify/{session}"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let described: Value = serde_json::from_str(&body).unwrap();
    let message = described["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&user(7).to_string()), "{message}");

    // Wrong signer: counted.
    let stranger = signature::sign_personal(&[0x43; 32], &message).unwrap();
    let (status, reply) = post(
        &t,
        &session,
        &json!({ "signature": stranger, "address": owner }),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["attempts_left"], 2);
    // Malformed: counted too.
    let (status, _) = post(&t, &session, &json!({ "signature": "0x1234" })).await;
    assert_eq!(status, 400);
    // Before onboarding, a message earns nothing, and loads the community's
    // roster of members who do.
    let say = |id: &str| json!({ "id": id, "channel_id": "2", "guild_id": GUILD.to_string(), "author": { "id": user(7).to_string() }, "content": "gm" });
    t.publish("MESSAGE_CREATE", say("10"), Some(GUILD)).await;
    let roster = format!("r:onboarded:{community}}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !t.redis.keys().iter().any(|k| k.ends_with(&roster)) {
        assert!(tokio::time::Instant::now() < deadline, "{}", t.worker.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The valid one links the wallet and assigns the Naib role (rank 1).
    let good = signature::sign_personal(&secret, &message).unwrap();
    let (status, reply) = post(
        &t,
        &session,
        &json!({ "signature": good, "address": owner }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["address"], owner.as_str());
    t.wait_sql(
        &format!(
            "SELECT user_id::text FROM wallets WHERE community_id = {community} AND address = '{owner}'"
        ),
        &user(7).to_string(),
    )
    .await;
    assert_eq!(t.sim.member_roles(GUILD, user(7)), Some(vec![NAIB_ROLE]));
    // Onboarded now: the loaded roster learned it, so messages count.
    t.publish("MESSAGE_CREATE", say("11"), Some(GUILD)).await;
    t.wait_sql(
        &format!(
            "SELECT points::text FROM activity WHERE community_id = {community} AND user_id = {}",
            user(7)
        ),
        "100",
    )
    .await;
    // A completed session takes nothing more.
    let (status, _) = post(&t, &session, &json!({ "signature": good })).await;
    assert_eq!(status, 409);
    let a = t
        .interact(cmd("verify", sub("status", json!([]))).user(user(7)))
        .await;
    assert!(a.content().contains(&owner), "{}", a.content());

    // A fourth attempt after three wrong ones is refused, even if valid.
    let a = t.interact(start(user(8))).await;
    let session = session_in(&a.content());
    let (_, body) = support::http_get(&t.worker.http, &format!("/verify/{session}"))
        .await
        .unwrap();
    let message = serde_json::from_str::<Value>(&body).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for attempt in 1..=3 {
        let (status, reply) = post(
            &t,
            &session,
            &json!({ "signature": stranger, "address": owner }),
        )
        .await;
        assert_eq!(status, if attempt < 3 { 400 } else { 429 }, "{reply}");
    }
    let other = [0x44u8; 32];
    let valid = signature::sign_personal(&other, &message).unwrap();
    let (status, reply) = post(&t, &session, &json!({ "signature": valid })).await;
    assert_eq!(status, 429, "fourth attempt: {reply}");

    // An expired session is refused.
    let a = t.interact(start(user(9))).await;
    let session = session_in(&a.content());
    t.sql(&format!(
        "UPDATE verification_sessions SET expires_at = now() - interval '1 second' \
         WHERE session_id = '{session}'"
    ))
    .await;
    let (status, reply) = post(&t, &session, &json!({ "signature": good })).await;
    assert_eq!(status, 410, "{reply}");
    // An unknown session.
    let (status, _) = post(
        &t,
        &format!("{community}.{}", "0".repeat(32)),
        &json!({ "signature": good }),
    )
    .await;
    assert_eq!(status, 404);
    t.finish().await;
}

fn session_in(content: &str) -> String {
    content
        .split("Session: `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no session in {content}"))
        .to_owned()
}

async fn post(t: &Sietch, session: &str, body: &Value) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(format!("http://{}/verify/{session}", t.worker.http))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("verify endpoint answers")
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_commands_overwrites_the_global_set_idempotently() {
    let t = Sietch::start(&[]).await;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_arrakis"))
            .arg("register-commands")
            .env_clear()
            .env("ARRAKIS_REST_URL", format!("{}/api/v10", t.proxy.base))
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("registered 18 global commands"),
        "{out:?}"
    );
    let first = t.sim.registered_commands();
    let out = run();
    assert!(out.status.success(), "{out:?}");
    let second = t.sim.registered_commands();
    assert_eq!(t.sim.command_overwrites(), 2);
    let ids = |v: &[Value]| v.iter().map(|c| c["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second), "same ids: idempotent");
    let names: BTreeSet<String> = second
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = arrakis::worker::sietch::registry::Command::ALL
        .iter()
        .map(|c| c.spec().name.to_owned())
        .collect();
    assert_eq!(names, expected);
    for c in &second {
        let name = c["name"].as_str().unwrap();
        let admin = name.starts_with("admin-") || name == "setup";
        assert_eq!(
            c["default_member_permissions"].as_str() == Some("8"),
            admin,
            "{name}"
        );
    }
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_commands_answer_from_the_snapshot_with_their_flags() {
    let t = Sietch::start(&[]).await;
    let community = populate(&t).await;
    link(&t, community, user(1), &wallet(1)).await;
    link(&t, community, user(2), &wallet(70)).await;
    t.sim.add_member(GUILD, user(1), &[]);
    t.sim.add_member(GUILD, user(2), &[]);

    // Before any snapshot.
    let a = t.interact(cmd("threshold", json!([]))).await;
    assert!(
        a.content().contains("No eligibility snapshot"),
        "{}",
        a.content()
    );
    sync(&t).await;

    // /check-eligibility: live chain, deferred ephemeral, then the edit.
    let a = t
        .interact(
            cmd(
                "check-eligibility",
                json!([string_option("wallet", &wallet(30))]),
            )
            .user(user(1)),
        )
        .await;
    assert_eq!(a.callback_type(), 5);
    assert!(a.ephemeral());
    let c = a.content();
    assert!(
        c.contains("710.00") && c.contains("#29") && c.contains("Eligible"),
        "{c}"
    );
    // Without a wallet: the caller's verified one.
    let a = t
        .interact(cmd("check-eligibility", json!([])).user(user(2)))
        .await;
    assert!(a.content().contains(&wallet(70)), "{}", a.content());
    // Its cooldown (5 s) refuses a third call right away, politely.
    let a = t
        .interact(cmd("check-eligibility", json!([])).user(user(2)))
        .await;
    assert!(a.content().contains("cooldown"), "{}", a.content());
    // The burner.
    let a = t
        .interact(
            cmd(
                "check-eligibility",
                json!([string_option("wallet", &wallet(900))]),
            )
            .user(user(3)),
        )
        .await;
    assert!(
        a.content().contains("permanently ineligible"),
        "{}",
        a.content()
    );
    // Not an address.
    let a = t
        .interact(
            cmd(
                "check-eligibility",
                json!([string_option("wallet", "0x12")]),
            )
            .user(user(4)),
        )
        .await;
    assert!(
        a.content().contains("not a wallet address"),
        "{}",
        a.content()
    );

    // /position: ephemeral, rank and Naib status.
    let a = t.interact(cmd("position", json!([])).user(user(1))).await;
    assert_eq!(a.callback_type(), 4);
    assert!(a.ephemeral());
    assert!(
        a.content().contains("#1") && a.content().contains("Naib seat 1"),
        "{}",
        a.content()
    );
    let a = t.interact(cmd("position", json!([])).user(user(2))).await;
    assert!(
        a.content().contains("#69") && a.content().contains("eligible"),
        "{}",
        a.content()
    );
    // Not verified.
    let a = t.interact(cmd("position", json!([])).user(user(99))).await;
    assert!(a.ephemeral());
    assert!(a.content().contains("not verified"), "{}", a.content());

    // /threshold: public; entry = rank 69's holdings (holder 70: 310).
    let a = t.interact(cmd("threshold", json!([]))).await;
    assert!(!a.ephemeral());
    let c = a.content();
    assert!(
        c.contains("310.00") && c.contains("Eligible members: **70**"),
        "{c}"
    );
    assert!(c.contains("#70"), "waitlist listed: {c}");

    // /naib overview|current|former: public.
    let a = t.interact(cmd("naib", sub("overview", json!([])))).await;
    assert!(!a.ephemeral());
    assert!(
        a.content().contains("Seat 1: <@") && a.content().contains("Seat 2: _vacant_"),
        "{}",
        a.content()
    );
    let a = t.interact(cmd("naib", sub("former", json!([])))).await;
    assert!(a.content().contains("No one has lost"), "{}", a.content());
    let a = t.interact(cmd("naib", sub("current", json!([])))).await;
    assert!(!a.ephemeral());
    assert!(
        a.content().contains(&format!("<@{}>", user(1))),
        "{}",
        a.content()
    );
    // A command this bot does not know (registered by something else).
    let a = t.interact(cmd("teleport", json!([]))).await;
    assert!(
        a.ephemeral() && a.content().contains("isn't available"),
        "{a:?}"
    );

    // /leaderboard: public.
    let a = t
        .interact(cmd("leaderboard", sub("badges", json!([]))))
        .await;
    assert!(!a.ephemeral());
    assert!(a.content().contains("No badges"), "{}", a.content());
    let a = t
        .interact(cmd("leaderboard", sub("tiers", json!([]))).user(user(5)))
        .await;
    assert!(
        a.content().contains("closest to the next tier"),
        "{}",
        a.content()
    );

    // /stats: ephemeral.
    let a = t.interact(cmd("stats", json!([])).user(user(1))).await;
    assert!(a.ephemeral());
    assert!(a.content().contains("Tier: Naib"), "{}", a.content());

    // The chain is unavailable: the live check says so.
    for i in 0..3 {
        t.chain.set_mode(i, EndpointMode::Down);
    }
    let a = t
        .interact(
            cmd(
                "check-eligibility",
                json!([string_option("wallet", &wallet(3))]),
            )
            .user(user(6)),
        )
        .await;
    assert!(
        a.content().contains("chain is unavailable"),
        "{}",
        a.content()
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_directory_and_alerts_work_through_their_components() {
    let t = Sietch::start(&[]).await;
    let community = t.community(GUILD, settings()).await;
    for n in 1..=12 {
        t.sql(&format!(
            "INSERT INTO profiles (community_id, user_id, nym) VALUES ({community}, {}, 'member{n:02}')",
            user(n)
        ))
        .await;
    }
    // /profile edit → buttons; a button → modal (9); the modal → saved.
    let me = user(50);
    let a = t
        .interact(cmd("profile", sub("edit", json!([]))).user(me))
        .await;
    assert!(a.ephemeral());
    assert!(a.components().to_string().contains("profile:edit-nym"));
    let a = t.interact(click("profile:edit-nym", me)).await;
    assert_eq!(a.callback_type(), 9, "{a:?}");
    assert_eq!(a.last().body["data"]["custom_id"], "profile:nym");
    let rows = json!([{ "type": 1, "components": [{ "type": 4, "custom_id": "nym", "value": "Stilgar" }] }]);
    let a = t
        .interact(
            InteractionSpec::modal_submit("profile:nym", rows.clone())
                .guild(GUILD)
                .user(me),
        )
        .await;
    assert!(a.content().contains("Stilgar"), "{}", a.content());
    // The same nym for another member is taken.
    let a = t
        .interact(
            InteractionSpec::modal_submit("profile:nym", rows)
                .guild(GUILD)
                .user(user(1)),
        )
        .await;
    assert!(a.content().contains("taken"), "{}", a.content());
    // Own profile: ephemeral; someone else's by nym: public.
    let a = t
        .interact(cmd("profile", sub("view", json!([]))).user(me))
        .await;
    assert!(a.ephemeral() && a.content().contains("Stilgar"), "{a:?}");
    let a = t
        .interact(
            cmd(
                "profile",
                sub("view", json!([string_option("nym", "member03")])),
            )
            .user(me),
        )
        .await;
    assert!(!a.ephemeral() && a.content().contains("member03"), "{a:?}");
    let a = t
        .interact(
            cmd(
                "profile",
                sub("view", json!([string_option("nym", "nobody")])),
            )
            .user(me),
        )
        .await;
    assert!(a.content().contains("No member goes by"), "{}", a.content());
    // Autocomplete (8) from Postgres.
    let a = t
        .interact(
            InteractionSpec::autocomplete(
                "profile",
                json!([{ "name": "view", "type": 1, "options": [{ "name": "nym", "type": 3, "value": "member1", "focused": true }] }]),
            )
            .guild(GUILD),
        )
        .await;
    assert_eq!(a.callback_type(), 8);
    let choices: Vec<String> = a.last().body["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(choices, vec!["member10", "member11", "member12"]);
    // /badges: own, ephemeral.
    let a = t.interact(cmd("badges", json!([])).user(me)).await;
    assert!(a.ephemeral() && a.content().contains("none yet"), "{a:?}");
    // Someone else's badges, by nym: public.
    let a = t
        .interact(cmd("badges", json!([string_option("nym", "member02")])).user(me))
        .await;
    assert!(!a.ephemeral() && a.content().contains("Badges of"), "{a:?}");
    // The bio modal.
    let a = t.interact(click("profile:edit-bio", me)).await;
    assert_eq!(a.callback_type(), 9, "{a:?}");
    let bio = json!([{ "type": 1, "components": [{ "type": 4, "custom_id": "bio", "value": "Fremen of Sietch Tabr" }] }]);
    let a = t
        .interact(
            InteractionSpec::modal_submit("profile:bio", bio)
                .guild(GUILD)
                .user(me),
        )
        .await;
    assert!(a.content().contains("bio is updated"), "{}", a.content());
    let a = t
        .interact(cmd("profile", sub("view", json!([]))).user(me))
        .await;
    assert!(
        a.content().contains("Fremen of Sietch Tabr"),
        "{}",
        a.content()
    );

    // /directory: 13 profiles, 10 per page; next → update (7) with page 2.
    let a = t.interact(cmd("directory", json!([])).user(me)).await;
    assert!(a.ephemeral());
    assert!(a.content().contains("page 1"), "{}", a.content());
    let a = t.interact(click("directory:next", me)).await;
    assert_eq!(a.callback_type(), 7);
    assert!(a.content().contains("page 2"), "{}", a.content());
    let a = t.interact(pick("directory:sort", &["nym"], me)).await;
    assert_eq!(a.callback_type(), 7);
    assert!(
        a.content().contains("page 1") && a.content().contains("by nym"),
        "{}",
        a.content()
    );
    // The tier filter: nobody here holds a tier.
    let a = t.interact(pick("directory:tier", &["naib"], me)).await;
    assert_eq!(a.callback_type(), 7);
    assert!(a.content().contains("No members match"), "{}", a.content());
    let a = t.interact(click("directory:prev", me)).await;
    assert!(
        a.content().contains("page 1") && a.content().contains("naib"),
        "{}",
        a.content()
    );
    // The browsing state expires with its Redis key.
    let redis = redis::Client::open(support::SHARED_REDIS).unwrap();
    let mut conn = redis.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*dir:*", t.redis.prefix))
        .query(&mut conn)
        .unwrap();
    assert!(!keys.is_empty(), "directory state lives in Redis");
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
    let a = t.interact(click("directory:next", me)).await;
    assert!(a.content().contains("expired"), "{}", a.content());

    // /alerts: a select menu and buttons, stored per member.
    let a = t.interact(cmd("alerts", json!([])).user(me)).await;
    assert!(a.ephemeral() && a.components().to_string().contains("alerts:kinds"));
    let a = t.interact(pick("alerts:kinds", &["naib"], me)).await;
    assert_eq!(a.callback_type(), 7);
    t.wait_sql(
        &format!(
            "SELECT settings->>'position' FROM notification_settings WHERE community_id = {community} AND user_id = {me}"
        ),
        "false",
    )
    .await;
    let a = t.interact(click("alerts:all-on", me)).await;
    assert_eq!(a.callback_type(), 7);
    t.wait_sql(
        &format!(
            "SELECT settings->>'position' FROM notification_settings WHERE community_id = {community} AND user_id = {me}"
        ),
        "true",
    )
    .await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waitlist_water_share_and_admin_commands() {
    let t = Sietch::start(&[]).await;
    let community = populate(&t).await;
    let waiting = user(20);
    link(&t, community, waiting, &wallet(75)).await;
    t.sim.add_member(GUILD, waiting, &[]);
    sync(&t).await;
    let admin = |name: &str, options: Value| cmd(name, options).permissions(ADMIN).user(user(90));

    // Not an admin: refused in the handler too.
    let a = t
        .interact(cmd("admin-stats", json!([])).user(user(91)))
        .await;
    assert!(a.ephemeral() && a.content().contains("permission"), "{a:?}");

    // /register-waitlist: an unverified wallet is refused; the member's
    // rank-74 wallet registers and gets Taqwa; unregister removes it.
    let a = t.interact(register(&wallet(76), waiting)).await;
    assert!(a.content().contains("not verified"), "{}", a.content());
    let n = t.sim.role_changes().len();
    let a = t.interact(register(&wallet(75), waiting)).await;
    assert!(
        a.ephemeral() && a.content().contains("#74"),
        "{}",
        a.content()
    );
    assert_eq!(
        summary(&changes_since(&t, n)),
        BTreeSet::from([change(waiting, TAQWA_ROLE, true)])
    );
    let a = t
        .interact(cmd("register-waitlist", sub("status", json!([]))).user(waiting))
        .await;
    assert!(a.content().contains("ranks #74"), "{}", a.content());
    // An already eligible wallet needs no waitlist.
    let top = user(21);
    link(&t, community, top, &wallet(2)).await;
    let a = t.interact(register(&wallet(2), top)).await;
    assert!(a.content().contains("already eligible"), "{}", a.content());
    let n = t.sim.role_changes().len();
    let a = t
        .interact(cmd("register-waitlist", sub("unregister", json!([]))).user(waiting))
        .await;
    assert!(a.content().contains("left the waitlist"), "{}", a.content());
    assert_eq!(
        summary(&changes_since(&t, n)),
        BTreeSet::from([change(waiting, TAQWA_ROLE, false)])
    );
    // Registered again, then climbing into the top 69: the waitlist DM
    // at the next sync, Fedaykin instead of Taqwa.
    t.interact(register(&wallet(75), waiting)).await;
    t.chain.mint(address(&wallet(75)), tokens(600));
    let n = t.sim.role_changes().len();
    sync(&t).await;
    let dms = t.sim.messages_sent();
    assert!(
        dms.iter()
            .any(|m| m.recipient_id == Some(waiting) && m.content.contains("eligible")),
        "{dms:?}"
    );
    assert_eq!(
        summary(&changes_since(&t, n)),
        BTreeSet::from([
            change(waiting, TAQWA_ROLE, false),
            change(waiting, FEDAYKIN_ROLE, true)
        ])
    );

    // Water share: needs the badge; an admin awards it (DM), then it is
    // passed once; lineage and a cascading revoke.
    let (a_user, b_user, c_user) = (user(30), user(31), user(32));
    let a = t.interact(share(a_user, b_user)).await;
    assert!(
        a.content().contains("need the Water Sharer badge"),
        "{}",
        a.content()
    );
    let a = t
        .interact(admin(
            "admin-badge",
            sub(
                "award",
                json!([
                    user_option("member", a_user),
                    string_option("badge", "water-sharer")
                ]),
            ),
        ))
        .await;
    assert!(a.content().starts_with("Awarded"), "{}", a.content());
    assert!(
        t.sim
            .messages_sent()
            .iter()
            .any(|m| m.recipient_id == Some(a_user))
    );
    let a = t.interact(share(a_user, b_user)).await;
    assert!(a.content().contains("shared your water"), "{}", a.content());
    let a = t.interact(share(a_user, c_user)).await;
    assert!(a.content().contains("already shared"), "{}", a.content());
    let a = t.interact(share(b_user, c_user)).await;
    assert!(a.content().contains("shared your water"), "{}", a.content());
    let a = t
        .interact(admin(
            "admin-water-share",
            sub("lineage", json!([user_option("member", c_user)])),
        ))
        .await;
    let c = a.content();
    assert!(
        c.contains(&format!("<@{a_user}> → <@{b_user}>"))
            && c.contains(&format!("<@{b_user}> → <@{c_user}>")),
        "{c}"
    );
    let a = t
        .interact(admin("admin-water-share", sub("list", json!([]))))
        .await;
    assert!(
        a.content().contains(&format!("<@{a_user}> → <@{b_user}>")),
        "{}",
        a.content()
    );
    let a = t
        .interact(cmd("water-share", sub("status", json!([]))).user(b_user))
        .await;
    let c = a.content();
    assert!(
        c.contains("You hold the Water Sharer badge")
            && c.contains(&format!("<@{a_user}> shared it with you"))
            && c.contains(&format!("You shared it with <@{c_user}>")),
        "{c}"
    );
    let a = t
        .interact(admin(
            "admin-water-share",
            sub("revoke", json!([user_option("member", b_user)])),
        ))
        .await;
    assert!(
        a.content().contains("Revoked 2 grant(s)"),
        "{}",
        a.content()
    );
    t.wait_sql(
        &format!("SELECT count(*)::text FROM badges WHERE community_id = {community} AND badge = 'water-sharer'"),
        "1",
    )
    .await;
    // Badge autocomplete from the catalogue.
    let a = t
        .interact(
            InteractionSpec::autocomplete(
                "admin-badge",
                json!([{ "name": "award", "type": 1, "options": [
                    { "name": "member", "type": 6, "value": a_user.to_string() },
                    { "name": "badge", "type": 3, "value": "vet", "focused": true }] }]),
            )
            .guild(GUILD)
            .permissions(ADMIN),
        )
        .await;
    assert_eq!(a.callback_type(), 8);
    assert_eq!(a.last().body["data"]["choices"][0]["name"], "veteran");

    // Overrides through the command, then the sync applies them.
    let a = t
        .interact(admin("admin-eligibility", json!([{ "name": "override", "type": 2, "options": [
            { "name": "add", "type": 1, "options": [
                string_option("wallet", &wallet(1)), string_option("action", "exclude"), string_option("reason", "test")] }] }])))
        .await;
    assert!(a.content().contains("excluded"), "{}", a.content());
    let a = t
        .interact(admin(
            "admin-eligibility",
            json!([{ "name": "override", "type": 2, "options": [
            { "name": "list", "type": 1, "options": [] }] }]),
        ))
        .await;
    assert!(
        a.content().contains(&wallet(1)) && a.content().contains(&wallet(5)),
        "{}",
        a.content()
    );
    sync(&t).await;
    t.wait_sql(
        &format!("SELECT count(*)::text FROM eligibility WHERE community_id = {community} AND address = '{}'", wallet(1)),
        "0",
    )
    .await;

    let remove = || {
        admin(
            "admin-eligibility",
            json!([{ "name": "override", "type": 2, "options": [
            { "name": "remove", "type": 1, "options": [string_option("wallet", &wallet(1))] }] }]),
        )
    };
    let a = t.interact(remove()).await;
    assert!(a.content().contains("removed"), "{}", a.content());
    let a = t.interact(remove()).await;
    assert!(a.content().contains("has no override"), "{}", a.content());
    // Badge revoke, and revoking what is not held.
    let revoke = || {
        admin(
            "admin-badge",
            sub(
                "revoke",
                json!([
                    user_option("member", a_user),
                    string_option("badge", "water-sharer")
                ]),
            ),
        )
    };
    let a = t.interact(revoke()).await;
    assert!(a.content().starts_with("Revoked"), "{}", a.content());
    let a = t.interact(revoke()).await;
    assert!(a.content().contains("does not hold"), "{}", a.content());

    // /verify reset (admin only): unlinks the waitlist member's wallet and
    // their roles follow.
    let reset = || {
        cmd(
            "verify",
            sub("reset", json!([user_option("user", waiting)])),
        )
    };
    let a = t.interact(reset().user(user(91))).await;
    assert!(a.content().contains("permission"), "{}", a.content());
    let n = t.sim.role_changes().len();
    let a = t.interact(reset().user(user(90)).permissions(ADMIN)).await;
    assert!(a.content().contains("Unlinked 1 wallet"), "{}", a.content());
    assert_eq!(
        summary(&changes_since(&t, n)),
        BTreeSet::from([change(waiting, FEDAYKIN_ROLE, false)])
    );

    // /admin-stats and /setup.
    let a = t.interact(admin("admin-stats", json!([]))).await;
    assert!(
        a.ephemeral() && a.content().contains("Verified: 1"),
        "{}",
        a.content()
    );
    let a = t
        .interact(admin(
            "setup",
            json!([string_option("thresholds", "hajra=1,usul=5000")]),
        ))
        .await;
    assert!(a.content().contains("Saved"), "{}", a.content());
    let a = t
        .interact(admin(
            "setup",
            json!([string_option("thresholds", "emperor=1")]),
        ))
        .await;
    assert!(a.content().contains("thresholds"), "{}", a.content());
    // No options: shows the configuration.
    let a = t.interact(admin("setup", json!([]))).await;
    let c = a.content();
    assert!(
        c.contains("Community configuration")
            && c.contains(TOKEN)
            && c.contains(&format!("<@&{NAIB_ROLE}>")),
        "{c}"
    );
    let stored = t
        .sql(&format!(
            "SELECT settings->'thresholds'->>'usul' FROM communities WHERE id = {community}"
        ))
        .await;
    assert_eq!(
        stored[0].get::<_, Option<String>>(0).as_deref(),
        Some("5000")
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_communities_never_see_each_others_data() {
    let t = Sietch::start(&[]).await;
    let other_chain =
        arrakis_loadtest::chain::ChainSim::start(arrakis_loadtest::chain::ChainSimConfig {
            token: [0x22; 20],
            ..arrakis_loadtest::chain::ChainSimConfig::default()
        })
        .await
        .unwrap();
    let guild_b = GUILD + 1;
    let a_id = populate(&t).await;
    let b_id = t
        .community(
            guild_b,
            json!({
                "token": "0x2222222222222222222222222222222222222222",
                "start_block": 999_000,
                "rpc_urls": other_chain.urls().join(","),
                "thresholds": { "hajra": 1 },
                "roles": { "naib": "8001", "hajra": "8009" },
            }),
        )
        .await;
    for n in 1..=3u64 {
        other_chain.mint(address(&wallet(1000 + n)), tokens(u128::from(n)));
    }
    link(&t, b_id, user(1), &wallet(1001)).await;
    link(&t, a_id, user(1), &wallet(1)).await;
    t.sim.add_member(GUILD, user(1), &[]);
    t.sim.add_member(guild_b, user(1), &[]);
    sync(&t).await;
    let a = t
        .interact(
            InteractionSpec::command("admin-eligibility", sub("sync", json!([])))
                .guild(guild_b)
                .permissions(ADMIN),
        )
        .await;
    assert!(a.content().contains("3 holders"), "{}", a.content());
    // The same user is Naib in A and hajra (balance 1, threshold 1) in B.
    let a = t.interact(cmd("position", json!([])).user(user(1))).await;
    assert!(
        a.content().contains("#1") && a.content().contains("1000.00"),
        "{}",
        a.content()
    );
    let b = t
        .interact(
            InteractionSpec::command("position", json!([]))
                .guild(guild_b)
                .user(user(1)),
        )
        .await;
    assert!(
        b.content().contains("#3")
            && b.content().contains("1.00")
            && !b.content().contains("1000.00"),
        "{}",
        b.content()
    );
    assert_eq!(t.sim.member_roles(guild_b, user(1)), Some(vec![8001]));
    assert_eq!(t.sim.member_roles(GUILD, user(1)), Some(vec![NAIB_ROLE]));
    // B's threshold shows B's 3 holders only.
    let b = t
        .interact(InteractionSpec::command("threshold", json!([])).guild(guild_b))
        .await;
    assert!(
        b.content().contains("Eligible members: **3**"),
        "{}",
        b.content()
    );
    // In the database, tenant transactions of B see none of A's rows.
    let tx = t.handle.tenant(b_id).await.unwrap();
    let rows = tx
        .query("SELECT count(*) FROM eligibility", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 3);
    tx.commit().await.unwrap();
    other_chain.shutdown().await;
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_events_join_leave_roles_and_activity() {
    let t = Sietch::start(&[]).await;
    let community = populate(&t).await;
    let member = user(40);
    link(&t, community, member, &wallet(2)).await;
    t.sim.add_member(GUILD, member, &[]);
    sync(&t).await;
    assert_eq!(t.sim.member_roles(GUILD, member), Some(vec![NAIB_ROLE]));

    // READY lists GUILD; its GUILD_CREATE is the burst, not a join. A
    // GUILD_CREATE for a guild READY did not list is a join.
    let new_guild = GUILD + 7;
    t.publish(
        "READY",
        json!({ "v": 10, "session_id": t.session(), "user": { "id": "1" },
                "guilds": [{ "id": GUILD.to_string(), "unavailable": true }] }),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let burst = json!({ "id": GUILD.to_string(), "name": "A", "joined_at": "2020-01-01T00:00:00.000000+00:00", "members": [] });
    t.publish("GUILD_CREATE", burst, Some(GUILD)).await;
    let join = json!({ "id": new_guild.to_string(), "name": "B", "joined_at": "2020-01-01T00:00:00.000000+00:00", "members": [] });
    t.publish("GUILD_CREATE", join, Some(new_guild)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while t.worker.metric("arrakis_worker_guild_joins_total").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", t.worker.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.worker.metric("arrakis_worker_guild_joins_total").await,
        1.0
    );
    t.wait_sql(
        &format!("SELECT count(*)::text FROM audit_log WHERE action = 'guild_join' AND community_id = {community}"),
        "0",
    )
    .await;
    // GUILD_DELETE: an outage (unavailable) changes nothing; a removal
    // deactivates, and commands then say the community is not active.
    t.publish(
        "GUILD_DELETE",
        json!({ "id": new_guild.to_string(), "unavailable": true }),
        Some(new_guild),
    )
    .await;
    t.publish(
        "GUILD_DELETE",
        json!({ "id": new_guild.to_string() }),
        Some(new_guild),
    )
    .await;
    t.wait_sql(
        &format!("SELECT active::text FROM communities WHERE guild_id = {new_guild}"),
        "false",
    )
    .await;
    let a = t
        .interact(InteractionSpec::command("position", json!([])).guild(new_guild))
        .await;
    assert!(
        a.content().contains("not an active Sietch community"),
        "{}",
        a.content()
    );

    // A verified member leaves (roles dropped by Discord) and rejoins:
    // the roles are sent again and an onboarding DM goes out.
    let user_obj = json!({ "id": member.to_string(), "username": "m" });
    t.publish(
        "GUILD_MEMBER_REMOVE",
        json!({ "guild_id": GUILD.to_string(), "user": user_obj }),
        Some(GUILD),
    )
    .await;
    t.wait_sql(
        &format!("SELECT (left_at IS NOT NULL)::text FROM profiles WHERE community_id = {community} AND user_id = {member}"),
        "true",
    )
    .await;
    t.sim.add_member(GUILD, member, &[]);
    let n = t.sim.role_changes().len();
    t.publish(
        "GUILD_MEMBER_ADD",
        json!({ "guild_id": GUILD.to_string(), "user": user_obj, "roles": [], "joined_at": "2025-01-01T00:00:00.000000+00:00" }),
        Some(GUILD),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !t
        .sim
        .messages_sent()
        .iter()
        .any(|m| m.recipient_id == Some(member) && m.content.contains("Welcome to the Sietch"))
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", t.worker.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The roles went out before the DM.
    assert_eq!(
        summary(&changes_since(&t, n)),
        BTreeSet::from([change(member, NAIB_ROLE, true)])
    );
    // Each effect has its audit line: the role grant, the DM, the rows.
    let log = t.worker.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("arrakis::audit"))
        .collect();
    let role_path = format!("/guilds/{GUILD}/members/{member}/roles/{NAIB_ROLE}");
    for wanted in [
        format!("effect=\"role_add\" method=PUT path=\"{role_path}\""),
        "effect=\"message_send\"".to_owned(),
        format!("effect=\"db_write\" community={community}"),
    ] {
        assert!(
            audit.iter().any(|l| l.contains(&wanted)),
            "no audit line with {wanted}:\n{}",
            audit.join("\n")
        );
    }

    // The 6-hourly decay runs once when a deployment first starts; let it
    // pass so it does not cut the points counted below.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !t.worker.log().contains("activity scores decayed") {
        assert!(tokio::time::Instant::now() < deadline, "{}", t.worker.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Activity: +1 per message (100 hundredths), +0.5 per reaction given,
    // +0.25 received; only for onboarded members; bots ignored.
    let other = user(41);
    link(&t, community, other, &wallet(3)).await;
    // A member who has not onboarded earns nothing, and their message is
    // settled before any claim or transaction: no idempotency record.
    let stranger = t
        .publish(
            "MESSAGE_CREATE",
            json!({ "id": "0", "channel_id": "2", "guild_id": GUILD.to_string(), "author": { "id": user(42).to_string() }, "content": "hello" }),
            Some(GUILD),
        )
        .await;
    t.publish(
        "MESSAGE_CREATE",
        json!({ "id": "1", "channel_id": "2", "guild_id": GUILD.to_string(), "author": { "id": member.to_string() }, "content": "hi" }),
        Some(GUILD),
    )
    .await;
    t.publish(
        "MESSAGE_CREATE",
        json!({ "id": "3", "channel_id": "2", "guild_id": GUILD.to_string(), "author": { "id": "5", "bot": true }, "content": "beep" }),
        Some(GUILD),
    )
    .await;
    t.publish(
        "MESSAGE_REACTION_ADD",
        json!({ "user_id": other.to_string(), "channel_id": "2", "message_id": "1", "guild_id": GUILD.to_string(),
                "message_author_id": member.to_string(), "emoji": { "name": "🔥" } }),
        Some(GUILD),
    )
    .await;
    t.wait_sql(
        &format!("SELECT points::text FROM activity WHERE community_id = {community} AND user_id = {member}"),
        "125",
    )
    .await;
    t.wait_sql(
        &format!("SELECT points::text FROM activity WHERE community_id = {community} AND user_id = {other}"),
        "50",
    )
    .await;
    t.wait_sql(
        &format!(
            "SELECT count(*)::text FROM activity WHERE community_id = {community} AND user_id = {}",
            user(42)
        ),
        "0",
    )
    .await;
    t.wait_sql(
        &format!("SELECT count(*)::text FROM processed_messages WHERE message_id = '{stranger}'"),
        "0",
    )
    .await;
    t.finish().await;
}
