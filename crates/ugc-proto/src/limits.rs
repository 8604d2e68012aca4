//! Connection caps shared by the TCP listeners (HTTP, HTTPS, RTMP): how
//! many connections the whole listener and one peer address may hold.
//!
//! A [`ConnLimiter`] hands out a [`Slot`] per admitted connection and takes
//! it back when the slot is dropped, so a connection's place is freed however
//! it ends. It is a plain counter behind a mutex (no sockets, no clock):
//! the listeners ask it right after `accept` and close what it refuses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Addresses a [`ConnLimiter`]'s per-address cap does not apply to (a CDN
/// edge or load balancer in front, which carries many clients on one
/// address).
pub type IpCapExempt = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// An [`IpCapExempt`] that settings deriving `Debug` and `Clone` can hold
/// (the RTMP and SRT listeners' configs): a studio or encoder farm whose
/// many encoders publish from one NAT address.
#[derive(Clone)]
pub struct ExemptIps(pub IpCapExempt);

impl ExemptIps {
    /// Exempts the addresses `f` says yes to.
    pub fn new(f: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> Self {
        ExemptIps(Arc::new(f))
    }

    /// Whether `ip` is exempt.
    pub fn contains(&self, ip: IpAddr) -> bool {
        (self.0)(ip)
    }
}

impl std::fmt::Debug for ExemptIps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExemptIps(..)")
    }
}

/// Counts open connections per address and in total; a connection holds
/// its [`Slot`] until it ends.
pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    exempt: Option<IpCapExempt>,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why [`ConnLimiter::admit`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `max_connections`.
    Total,
    /// The peer's address holds `max_connections_per_ip`.
    PerIp,
}

impl ConnLimiter {
    /// A limiter with the caps (0 = none).
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Self::with_exempt(max_total, max_per_ip, None)
    }

    /// A limiter with the caps (0 = none); `exempt` addresses only count
    /// towards the total.
    pub fn with_exempt(
        max_total: usize,
        max_per_ip: usize,
        exempt: Option<IpCapExempt>,
    ) -> Arc<Self> {
        Arc::new(ConnLimiter {
            max_total,
            max_per_ip,
            exempt,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for a connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.max_total > 0 && open.0 >= self.max_total {
            return Err(Refused::Total);
        }
        let capped = self.max_per_ip > 0 && !self.exempt.as_ref().is_some_and(|f| f(ip));
        let n = open.1.entry(ip).or_insert(0);
        if capped && *n >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        open.0 += 1;
        Ok(Slot {
            limiter: Arc::clone(self),
            ip,
        })
    }

    /// Open connections in total.
    pub fn open_total(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Open connections: in total, and of `ip`.
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.0, open.1.get(&ip).copied().unwrap_or(0))
    }
}

impl std::fmt::Debug for ConnLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnLimiter")
            .field("max_total", &self.max_total)
            .field("max_per_ip", &self.max_per_ip)
            .field("open", &self.open_total())
            .finish_non_exhaustive()
    }
}

/// One admitted connection; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let limiter = ConnLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limiter.admit(a).unwrap();
        let _a2 = limiter.admit(a).unwrap();
        assert_eq!(limiter.admit(a).unwrap_err(), Refused::PerIp);
        let _b1 = limiter.admit(b).unwrap();
        assert_eq!(limiter.admit(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(limiter.open(a), (2, 1));
        let _b2 = limiter.admit(b).unwrap();
        assert_eq!(limiter.open(b), (3, 2));
    }

    #[test]
    fn exempt_addresses_count_only_towards_the_total() {
        let edge: IpAddr = "192.0.2.1".parse().unwrap();
        let limiter = ConnLimiter::with_exempt(5, 2, Some(Arc::new(move |ip| ip == edge)));
        let slots: Vec<_> = (0..5).map(|_| limiter.admit(edge).unwrap()).collect();
        assert_eq!(limiter.admit(edge).unwrap_err(), Refused::Total);
        drop(slots);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let _a = limiter.admit(other).unwrap();
        let _b = limiter.admit(other).unwrap();
        assert_eq!(limiter.admit(other).unwrap_err(), Refused::PerIp);
    }

    #[test]
    fn zero_means_no_cap() {
        let limiter = ConnLimiter::new(0, 0);
        let a: IpAddr = "::1".parse().unwrap();
        let slots: Vec<_> = (0..10_000).map(|_| limiter.admit(a).unwrap()).collect();
        assert_eq!(limiter.open(a), (10_000, 10_000));
        drop(slots);
        assert_eq!(limiter.open(a), (0, 0));
    }
}
