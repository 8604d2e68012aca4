//! Play-token cost: what every private playlist, part and segment request
//! pays. Goal: verification < 2 µs.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use ugc_auth::{ControlConfig, ControlPlane, PlayClaims, Principal, SessionId, TokenKey};
use ugc_core::PlayRequest;
use ugc_core::StreamPath;

fn claims() -> PlayClaims {
    PlayClaims {
        stream: "some-creator-stream".into(),
        expires_at: 4_000_000_000,
        session: SessionId([0x5a; 16]),
        bind_ip: Some([203, 0, 113, 7].into()),
    }
}

fn token(c: &mut Criterion) {
    let key = TokenKey::new(&[7u8; 32]);
    let t = key.sign(&claims()).expect("sign");
    c.bench_function("token/sign", |b| b.iter(|| key.sign(black_box(&claims()))));
    c.bench_function("token/verify", |b| {
        b.iter(|| key.verify(black_box(&t), black_box(1_800_000_000)))
    });
    let mut bad = t.clone().into_bytes();
    bad[10] ^= 1;
    let bad = String::from_utf8(bad).unwrap_or_default();
    c.bench_function("token/verify_tampered", |b| {
        b.iter(|| key.verify(black_box(&bad), black_box(1_800_000_000)))
    });

    // The whole local play decision of the authorizer: settings lookup,
    // token, stream, IP and revocation checks.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("ugc-bench-token-{}", std::process::id()));
    let (cp, req) = rt.block_on(async {
        let mut cfg = ControlConfig::new(&dir);
        cfg.admin_token = Some("bench-admin-token-0123456789".into());
        let cp = ControlPlane::open(cfg).await.expect("open");
        let admin = Principal {
            id: "admin".into(),
            admin: true,
        };
        let new = serde_json::from_value(serde_json::json!({"name": "bench", "private": true}))
            .expect("json");
        let _ = cp.create_stream(&admin, new).await;
        let g = cp
            .issue_play(&admin, "bench", None, Some([203, 0, 113, 7].into()))
            .await
            .expect("play");
        let req = PlayRequest {
            stream: StreamPath::parse("live/bench").unwrap(),
            token: Some(g.token),
            client_ip: [203, 0, 113, 7].into(),
        };
        (cp, req)
    });
    let now = g_now();
    c.bench_function("authorizer/check_play_private", |b| {
        b.iter(|| cp.check_play(black_box(&req), now))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn g_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

criterion_group!(benches, token);
criterion_main!(benches);
