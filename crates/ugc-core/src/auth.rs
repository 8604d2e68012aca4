//! The authorization seam between ingest/origin and the control plane.
//!
//! Protocols never decide policy: an ingest core reports a publish request as
//! an event, the adapter asks an [`Authorizer`], and the answer decides the
//! stream name it publishes to (or a rejection).

use std::future::Future;
use std::net::IpAddr;

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
    /// Publish as the Hub stream of this name (e.g. `live/<stream>`).
    Allow {
        /// The Hub stream name.
        stream: String,
    },
    /// Refuse, with a reason for the log (never sent to the peer verbatim).
    Deny {
        /// Why.
        reason: String,
    },
}

/// Decides who may publish. Implemented by `ugc-auth`; [`AllowAll`] maps a
/// key to the stream of the same name, for development.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides one publish request.
    fn authorize_publish(
        &self,
        req: &PublishRequest,
    ) -> impl Future<Output = PublishDecision> + Send;
}

/// Allows every publisher whose app and key are valid stream-name segments;
/// the stream is `<app>/<key>`. Used until a control plane is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    async fn authorize_publish(&self, req: &PublishRequest) -> PublishDecision {
        match crate::name::StreamName::from_parts(&req.app, &req.key) {
            Ok(name) => PublishDecision::Allow {
                stream: name.into_string(),
            },
            Err(e) => PublishDecision::Deny {
                reason: e.to_string(),
            },
        }
    }
}
