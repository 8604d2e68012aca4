//! The authorization seam between ingest/origin and the control plane.
//!
//! Protocols never decide policy: an ingest core reports a publish request as
//! an event, the adapter asks an [`Authorizer`], and the answer decides the
//! stream name it publishes to (or a rejection).

use std::future::Future;
use std::net::IpAddr;

use crate::hub::SourceRole;
use crate::name::StreamPath;

/// The ingest protocol of a publish request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// RTMP or RTMPS.
    Rtmp,
    /// SRT.
    Srt,
    /// WebRTC WHIP.
    Whip,
}

/// A publisher asks to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Ingest protocol.
    pub protocol: Protocol,
    /// Application name (`live` in `rtmp://host/live/<key>`).
    pub app: String,
    /// The stream key (or stream name) the publisher sent.
    pub key: String,
    /// The publisher's address.
    pub client_ip: IpAddr,
}

/// The answer to a [`PublishRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishDecision {
    /// Publish as this stream (e.g. `live/<stream>`).
    Allow {
        /// The stream.
        stream: StreamPath,
        /// Which of the stream's sources the publisher is: its main
        /// publisher, or a backup standing by (see [`crate::hub`]).
        role: SourceRole,
    },
    /// Refuse. The ingest answers with its protocol's code for `kind` and
    /// shows `reason` to the publisher (RTMP: the `onStatus` description,
    /// which OBS, ffmpeg and GStreamer print), and logs both.
    Deny {
        /// What kind of refusal (picks the protocol's refusal code).
        kind: DenyKind,
        /// Why, in words for the publisher and the log: "unknown stream
        /// key", "stream key was rotated or deleted". Never a secret (the
        /// key itself, tokens, internal addresses, database errors).
        reason: String,
    },
}

impl PublishDecision {
    /// [`PublishDecision::Allow`] as the stream's main publisher.
    pub fn allow(stream: StreamPath) -> Self {
        PublishDecision::Allow {
            stream,
            role: SourceRole::Main,
        }
    }

    /// [`PublishDecision::Deny`] of kind [`DenyKind::Unauthorized`].
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        PublishDecision::Deny {
            kind: DenyKind::Unauthorized,
            reason: reason.into(),
        }
    }

    /// [`PublishDecision::Deny`] of kind [`DenyKind::BadName`].
    pub fn bad_name(reason: impl Into<String>) -> Self {
        PublishDecision::Deny {
            kind: DenyKind::BadName,
            reason: reason.into(),
        }
    }

    /// [`PublishDecision::Deny`] of kind [`DenyKind::Unavailable`].
    pub fn unavailable(reason: impl Into<String>) -> Self {
        PublishDecision::Deny {
            kind: DenyKind::Unavailable,
            reason: reason.into(),
        }
    }
}

/// The kind of a publish refusal. Each ingest protocol maps it to its own
/// code, so that clients tell "wrong key" from "name taken" from "try again".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyKind {
    /// The publisher may not publish: an unknown, rotated or malformed key,
    /// an unknown application, refused by an auth backend. RTMP
    /// `NetStream.Publish.Denied`, SRT 2401.
    Unauthorized,
    /// The stream name is invalid, or taken. RTMP
    /// `NetStream.Publish.BadName` (which clients show as "stream already
    /// exists"), SRT 2400.
    BadName,
    /// No decision or no room now (a key lookup or an auth backend failed,
    /// a limit is reached); the same request may succeed later. RTMP
    /// `NetStream.Failed`, SRT 2503.
    Unavailable,
}

/// A viewer asks for a playlist, part or segment of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayRequest {
    /// The stream (`live/<stream>`; a ladder's renditions are played under
    /// their source's authorization, so this is the source).
    pub stream: StreamPath,
    /// The `token` query parameter, if any.
    pub token: Option<String>,
    /// The viewer's address (after trusted-proxy resolution).
    pub client_ip: IpAddr,
}

/// The answer to a [`PlayRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayDecision {
    /// Serve it.
    Allow,
    /// Refuse (HTTP 403), with a reason for the log.
    Deny {
        /// Why.
        reason: String,
    },
    /// No such stream (HTTP 404): not a refusal, so players and monitoring
    /// see the stream is missing rather than that they lack a right.
    /// (Private streams refuse with [`Deny`](Self::Deny) whether or not they
    /// are live.)
    NotFound {
        /// Why, for the log.
        reason: String,
    },
}

/// Decides who may publish and who may play. Implemented by `ugc-auth`;
/// [`AllowAll`] maps a key to the stream of the same name and lets everyone
/// play, for development.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides one publish request.
    fn authorize_publish(
        &self,
        req: &PublishRequest,
    ) -> impl Future<Output = PublishDecision> + Send;

    /// Decides one play request. Called on every playlist, part and segment
    /// request, so it must be cheap (no database round trip). Allows all by
    /// default.
    fn authorize_play(&self, req: &PlayRequest) -> impl Future<Output = PlayDecision> + Send {
        let _ = req;
        std::future::ready(PlayDecision::Allow)
    }
}

/// Allows every publisher whose app and key are valid stream-name segments;
/// the stream is `<app>/<key>`. Used until a control plane is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    async fn authorize_publish(&self, req: &PublishRequest) -> PublishDecision {
        match StreamPath::new(&req.app, &req.key) {
            Ok(stream) => PublishDecision::allow(stream),
            Err(e) => PublishDecision::bad_name(e.to_string()),
        }
    }
}
