//! The [`ugc_core::Authorizer`] of the control plane.

use serde_json::json;
use ugc_core::{
    Authorizer, PlayDecision, PlayRequest, Protocol, PublishDecision, PublishRequest, SourceRole,
    StreamPath,
};

use crate::external::BackendDenial;
use crate::plane::ControlPlane;
use crate::util::unix_now;
use crate::validate;

/// The application name every ingest protocol publishes under: the
/// control plane's streams are all `live/<name>`.
pub const APP: &str = ugc_core::DEFAULT_APP;
/// The application a stream's backup publisher publishes to, with the
/// stream's own key (`rtmp://host/backup/<key>`): it stands by while the
/// main publisher is live and takes over when it is not.
pub const BACKUP_APP: &str = "backup";

/// Authorizes publishers by stream key and viewers by play token, from
/// memory; then asks the external backends, if configured. Cheap to clone.
///
/// * Publish: `app` must be `live` and `key` the current key of a stream
///   `<name>`; the answer is `live/<name>`. Same for RTMP (`live/<key>`),
///   SRT (`r=live/<key>`) and WHIP (bearer key): the ingest passes app and
///   key. Refusals say why without a secret (the publisher reads them):
///   unknown app, malformed key, unknown key, rotated key are
///   [`DenyKind::Unauthorized`](ugc_core::DenyKind::Unauthorized); a failed
///   key lookup or an unreachable backend is
///   [`DenyKind::Unavailable`](ugc_core::DenyKind::Unavailable) (the detail
///   goes to our log only).
/// * Play: `stream` is `live/<name>` (or `live/<name>/<rendition>`); public
///   streams are allowed; private ones need a token for `<name>`, not
///   expired, not revoked, and bound to `client_ip` if it is IP-bound.
///   Unknown streams are not found (404).
#[derive(Clone, Debug)]
pub struct ControlAuthorizer {
    pub(crate) cp: ControlPlane,
}

fn unknown_stream(reason: impl Into<String>) -> PlayDecision {
    PlayDecision::NotFound {
        reason: reason.into(),
    }
}

fn deny_play(reason: impl Into<String>) -> PlayDecision {
    PlayDecision::Deny {
        reason: reason.into(),
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Rtmp => "rtmp",
        Protocol::Srt => "srt",
        Protocol::Whip => "whip",
        _ => "other",
    }
}

impl ControlPlane {
    /// The [`Authorizer`] for ingest and origin.
    pub fn authorizer(&self) -> ControlAuthorizer {
        ControlAuthorizer { cp: self.clone() }
    }

    /// The local publish decision (no external backend).
    pub async fn check_publish(&self, req: &PublishRequest) -> PublishDecision {
        let role = match req.app.as_str() {
            APP => SourceRole::Main,
            BACKUP_APP => SourceRole::Backup,
            _ => {
                return PublishDecision::unauthorized(format!(
                    "unknown application {:?} (publish to {APP}/<stream key>, or \
                     {BACKUP_APP}/<stream key> as the stream's backup)",
                    req.app.escape_default().to_string()
                ));
            }
        };
        if let Err(e) = validate::stream_key(&req.key) {
            let why = match e {
                crate::Error::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            return PublishDecision::unauthorized(format!("malformed stream key: {why}"));
        }
        let cached = {
            let keys = self
                .inner
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if keys.retired.contains(&req.key) {
                return PublishDecision::unauthorized("stream key was rotated or deleted");
            }
            keys.by_key.get(&req.key).cloned()
        };
        let name = match cached {
            Some(n) => n,
            // Another node sharing the database may have created it.
            None => match self.inner.store.stream_name_by_key(&req.key).await {
                Ok(Some(n)) => {
                    let mut keys = self
                        .inner
                        .keys
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    // Retired while we read the database: refuse.
                    if keys.retired.contains(&req.key) {
                        return PublishDecision::unauthorized("stream key was rotated or deleted");
                    }
                    keys.by_key.insert(req.key.clone(), n.clone());
                    n
                }
                Ok(None) => return PublishDecision::unauthorized("unknown stream key"),
                Err(e) => {
                    // The database error may name hosts or tables: log only.
                    tracing::warn!(error = %e, "stream key lookup failed; refusing the publisher");
                    return PublishDecision::unavailable("stream key lookup failed; try again");
                }
            },
        };
        match StreamPath::new(APP, &name) {
            Ok(stream) => PublishDecision::Allow { stream, role },
            Err(e) => PublishDecision::bad_name(format!("stream name: {e}")),
        }
    }

    /// The local play decision at `now` (unix s), without the external
    /// backend: pure memory, no I/O.
    pub fn check_play(&self, req: &PlayRequest, now: u64) -> PlayDecision {
        if req.stream.app() != APP {
            return unknown_stream("not a live/ stream");
        }
        let name = req.stream.name();
        let private = match self
            .inner
            .settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            Some(s) => s.private,
            None => return unknown_stream("unknown stream"),
        };
        if !private {
            return PlayDecision::Allow;
        }
        let revoked = self
            .inner
            .revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        check_play_token(&self.inner.key, &revoked, req, now)
    }
}

/// The play decision for a private stream's viewer at `now` (unix s): a
/// token signed with `key`, for this stream, bound to the viewer's address
/// if bound, of a session not `revoked`. The control plane's and an origin
/// node's ([`crate::node::PlayKeys`]) check.
pub(crate) fn check_play_token(
    key: &crate::token::TokenKey,
    revoked: &std::collections::HashSet<crate::token::SessionId>,
    req: &PlayRequest,
    now: u64,
) -> PlayDecision {
    let Some(token) = req.token.as_deref() else {
        return deny_play("private stream: no token");
    };
    let claims = match key.verify(token, now) {
        Ok(c) => c,
        Err(e) => return deny_play(e.to_string()),
    };
    if claims.stream != req.stream.name() {
        return deny_play("token for another stream");
    }
    if let Some(ip) = claims.bind_ip
        && ip != req.client_ip
        && Some(ip) != ipv4_of(req.client_ip)
    {
        return deny_play("token bound to another address");
    }
    if revoked.contains(&claims.session) {
        return deny_play("session revoked");
    }
    PlayDecision::Allow
}

fn ipv4_of(ip: std::net::IpAddr) -> Option<std::net::IpAddr> {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4),
        std::net::IpAddr::V4(_) => None,
    }
}

impl Authorizer for ControlAuthorizer {
    async fn authorize_publish(&self, req: &PublishRequest) -> PublishDecision {
        let d = self.cp.check_publish(req).await;
        let (PublishDecision::Allow { stream, role }, Some(b)) =
            (&d, &self.cp.inner.publish_backend)
        else {
            return d;
        };
        let body = json!({
            "action": "publish",
            "protocol": protocol_name(req.protocol),
            "app": req.app,
            "key": req.key,
            "stream": stream.as_str(),
            "role": role.as_str(),
            "client_ip": req.client_ip.to_string(),
        });
        match b.ask(body).await {
            Ok(()) => d,
            Err(BackendDenial::Refused(status)) => PublishDecision::unauthorized(format!(
                "refused by the publish auth backend (HTTP {status})"
            )),
            Err(BackendDenial::Failed(why)) => {
                // `why` may name the backend's address: log only.
                tracing::warn!(error = %why, "publish auth backend failed; refusing the publisher");
                PublishDecision::unavailable("publish auth backend unavailable; try again")
            }
        }
    }

    async fn authorize_play(&self, req: &PlayRequest) -> PlayDecision {
        let d = self.cp.check_play(req, unix_now());
        let (PlayDecision::Allow, Some(b)) = (&d, &self.cp.inner.play_backend) else {
            return d;
        };
        let body = json!({
            "action": "play",
            "stream": req.stream.as_str(),
            "token": req.token,
            "client_ip": req.client_ip.to_string(),
        });
        match b.ask(body).await {
            Ok(()) => d,
            Err(why) => deny_play(why.to_string()),
        }
    }
}
