//! A binary's WebRTC listener: WHIP and/or WHEP signalling on its HTTP
//! port, every session's media on UDP sockets bound here, and on ICE-TCP
//! listeners beside them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};
use ugc_core::{Authorizer, Hub};
use ugc_proto::origin::ClientIp;
use ugc_proto::whip::server::{IceTcp, WhipConfig, WhipServer, bind_sockets, bind_tcp};

/// What a flag's value and the binary's wiring give [`start_at`].
pub struct Wiring<A> {
    pub hub: Hub,
    pub auth: Arc<A>,
    pub client_ip: ClientIp,
    pub config: WhipConfig,
    /// Where ICE-TCP listens (`--<flag's protocol>-tcp`).
    pub tcp: IceTcp,
}

/// [`start_at`] for the value of flag `--<flag>`: an address, or `off`;
/// any other than `default` is explicit. (ugc-server resolves its address
/// from its config file and flags itself.)
#[allow(dead_code)]
pub async fn start<A: Authorizer>(
    flag: &str,
    udp: &str,
    default: &str,
    ips: &[IpAddr],
    wiring: Wiring<A>,
) -> anyhow::Result<Option<WhipServer<A>>> {
    if udp == "off" {
        return Ok(None);
    }
    let addr: SocketAddr = udp
        .parse()
        .with_context(|| format!("--{flag} {udp:?} (an address or off)"))?;
    start_at(flag, addr, udp != default, ips, wiring).await
}

/// Starts WebRTC on `addr`: with an unspecified IP one socket per address
/// of `ips` (default 127.0.0.1 and the default route's). Sockets that
/// cannot be bound are an error when the address was asked for
/// (`explicit`), else WebRTC is off with a warning (the default port is
/// another program's).
pub async fn start_at<A: Authorizer>(
    flag: &str,
    addr: SocketAddr,
    explicit: bool,
    ips: &[IpAddr],
    w: Wiring<A>,
) -> anyhow::Result<Option<WhipServer<A>>> {
    match bind_sockets(addr, ips).await {
        Ok(sockets) => {
            let tcp_flag = flag.replace("-udp", "-tcp");
            let listeners = bind_tcp(w.tcp, ips, &sockets)
                .await
                .with_context(|| format!("binding --{tcp_flag} {:?}", w.tcp))?;
            let addrs: Vec<String> = sockets
                .iter()
                .filter_map(|s| s.local_addr().ok())
                .map(|a| a.to_string())
                .collect();
            let tcp: Vec<String> = listeners
                .iter()
                .filter_map(|s| s.local_addr().ok())
                .map(|a| a.to_string())
                .collect();
            info!(udp = %addrs.join(","), tcp = %tcp.join(","), public_ip = ?w.config.public_ip, "WebRTC listening");
            Ok(Some(WhipServer::start(
                sockets,
                listeners,
                w.hub,
                w.auth,
                w.client_ip,
                w.config,
            )?))
        }
        Err(e) if !explicit => {
            warn!(error = %e, %addr, "WebRTC off: its default UDP port is taken (set --{flag})");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding --{flag} {addr}")),
    }
}
