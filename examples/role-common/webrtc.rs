//! A role binary's WebRTC listener: WHIP and/or WHEP signalling on its HTTP
//! port, every session's media on UDP sockets bound here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};
use ugc_core::{Authorizer, Hub};
use ugc_proto::origin::ClientIp;
use ugc_proto::whip::server::{WhipConfig, WhipServer, bind_sockets};

/// Starts WebRTC on `udp` (an address, or `off`; flag `--<flag>` in
/// messages): with an unspecified IP one socket per address of `ips`
/// (default 127.0.0.1 and the default route's). Sockets that cannot be
/// bound turn it off with a warning.
pub async fn start<A: Authorizer>(
    flag: &str,
    udp: &str,
    ips: &[IpAddr],
    hub: Hub,
    auth: Arc<A>,
    client_ip: ClientIp,
    config: WhipConfig,
) -> anyhow::Result<Option<WhipServer<A>>> {
    if udp == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = udp
        .parse()
        .with_context(|| format!("--{flag} {udp:?} (an address or off)"))?;
    match bind_sockets(addr, ips).await {
        Ok(sockets) => {
            let addrs: Vec<String> = sockets
                .iter()
                .filter_map(|s| s.local_addr().ok())
                .map(|a| a.to_string())
                .collect();
            info!(udp = %addrs.join(","), public_ip = ?config.public_ip, "WebRTC listening");
            Ok(Some(WhipServer::start(
                sockets, hub, auth, client_ip, config,
            )?))
        }
        Err(e) => {
            warn!(error = %e, %addr, "WebRTC off: cannot bind its UDP sockets (--{flag})");
            Ok(None)
        }
    }
}
