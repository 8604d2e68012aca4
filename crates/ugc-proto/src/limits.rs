//! Connection caps shared by the TCP listeners (HTTP, HTTPS, RTMP): how
//! many connections the whole listener and one peer address may hold.
//!
//! A [`ConnLimiter`] hands out a [`Slot`] per admitted connection and takes
//! it back when the slot is dropped, so a connection's place is freed however
//! it ends. It is a plain counter behind a mutex (no sockets, no clock):
//! the listeners ask it right after `accept` and close what it refuses.
//!
//! **Unproven connections give way at the cap.** A connection is unproven
//! until it shows it is a real client ([`Slot::prove`]: an HTTP request
//! arrived, an RTMP publish was authorized). When the listener holds its
//! total cap, a new connection does not get refused while unproven ones
//! are open: the oldest unproven one is told to close
//! ([`Slot::displaced`]) and the new one takes its place. Idle sockets from
//! many addresses (a slowloris spread under the per-address cap) would
//! otherwise fill the listener and lock every viewer and publisher out
//! until their timeouts; with this, a client that sends its request at once
//! always gets in, and the attacker's sockets only push out each other.
//! Proven connections are never displaced; with only proven ones open, a
//! new connection is refused as before.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

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
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Unproven connections by admission order, oldest first.
    unproven: BTreeMap<u64, Arc<Displace>>,
    next_id: u64,
    /// Connections told to give way that still hold their slot.
    leaving: usize,
}

/// How many displaced connections may still be closing (holding their
/// slot past the cap) before new ones are refused rather than admitted
/// over them: the displaced close within a scheduler tick, so this bounds
/// a flood that admits faster than they close.
const MAX_LEAVING: usize = 64;

/// The signal to a displaced connection: set once, wakes its waiter.
#[derive(Default)]
struct Displace {
    set: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Displace {
    fn fire(&self) {
        self.set.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }
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
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for a connection from `ip`, or why not. At the total cap the
    /// oldest unproven connection is displaced for it (see the module doc;
    /// [`Slot::displaced_another`] says so).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let capped = self.max_per_ip > 0 && !self.exempt.as_ref().is_some_and(|f| f(ip));
        if capped && open.per_ip.get(&ip).is_some_and(|n| *n >= self.max_per_ip) {
            return Err(Refused::PerIp);
        }
        let mut displaced = false;
        if self.max_total > 0 && open.total - open.leaving >= self.max_total {
            if open.leaving >= MAX_LEAVING {
                return Err(Refused::Total);
            }
            let Some((_, oldest)) = open.unproven.pop_first() else {
                return Err(Refused::Total);
            };
            oldest.fire();
            open.leaving += 1;
            displaced = true;
        }
        *open.per_ip.entry(ip).or_insert(0) += 1;
        open.total += 1;
        let id = open.next_id;
        open.next_id += 1;
        let signal = Arc::new(Displace::default());
        open.unproven.insert(id, Arc::clone(&signal));
        Ok(Slot {
            limiter: Arc::clone(self),
            ip,
            id,
            signal,
            proven: AtomicBool::new(false),
            displaced_another: displaced,
        })
    }

    /// Open connections in total.
    pub fn open_total(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Open connections: in total, and of `ip`.
    pub fn open(&self, ip: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        (open.total, open.per_ip.get(&ip).copied().unwrap_or(0))
    }

    /// Displaced connections still closing (they hold their slot until
    /// then). An acceptor refused at the cap while some are should let
    /// them run (yield) and ask again, rather than refuse a client for a
    /// scheduling delay: see [`Self::admit_soon`].
    pub fn leaving(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).leaving
    }

    /// [`Self::admit`], asking again after each `yield_now` (up to 16)
    /// while it refuses at the total cap only because displaced
    /// connections have not closed yet: a burst from the accept queue is
    /// admitted in the acceptor's time slice, faster than the displaced
    /// tasks run.
    pub async fn admit_soon<F: Future<Output = ()>>(
        self: &Arc<Self>,
        ip: IpAddr,
        mut yield_now: impl FnMut() -> F,
    ) -> Result<Slot, Refused> {
        let mut admitted = self.admit(ip);
        for _ in 0..16 {
            if !matches!(admitted, Err(Refused::Total)) || self.leaving() == 0 {
                break;
            }
            yield_now().await;
            admitted = self.admit(ip);
        }
        admitted
    }

    /// Open connections not yet proven (see [`Slot::prove`]).
    pub fn unproven(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unproven
            .len()
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
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
    id: u64,
    signal: Arc<Displace>,
    proven: AtomicBool,
    displaced_another: bool,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("ip", &self.ip)
            .field("id", &self.id)
            .field("proven", &self.proven.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// The connection showed it is a real client: it is never displaced
    /// from now on. Cheap after the first call.
    pub fn prove(&self) {
        if self.proven.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        open.unproven.remove(&self.id);
    }

    /// Completes when a newer connection displaced this unproven one at
    /// the cap: the connection should close now. Never completes for a
    /// proven one.
    pub fn displaced(&self) -> Displaced {
        Displaced(Arc::clone(&self.signal))
    }

    /// Whether this connection's admission displaced an unproven one.
    pub fn displaced_another(&self) -> bool {
        self.displaced_another
    }
}

/// The future of [`Slot::displaced`].
pub struct Displaced(Arc<Displace>);

impl Future for Displaced {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.0.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // Fired between the check and storing the waker: seen here.
        if self.0.set.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if self.signal.set.load(Ordering::Acquire) {
            open.leaving -= 1;
        } else {
            open.unproven.remove(&self.id);
        }
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
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
        let proven = |ip| {
            let s = limiter.admit(ip).unwrap();
            s.prove();
            s
        };
        let a1 = proven(a);
        let _a2 = proven(a);
        assert_eq!(limiter.admit(a).unwrap_err(), Refused::PerIp);
        let _b1 = proven(b);
        assert_eq!(limiter.admit(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(limiter.open(a), (2, 1));
        let _b2 = limiter.admit(b).unwrap();
        assert_eq!(limiter.open(b), (3, 2));
    }

    /// Polls `slot.displaced()` once.
    fn is_displaced(slot: &Slot) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        std::pin::pin!(slot.displaced()).poll(&mut cx).is_ready()
    }

    #[test]
    fn at_the_cap_the_oldest_unproven_connection_gives_way() {
        let limiter = ConnLimiter::new(3, 0);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let viewer = limiter.admit(ip(1)).unwrap();
        viewer.prove();
        let idle1 = limiter.admit(ip(2)).unwrap();
        let idle2 = limiter.admit(ip(3)).unwrap();
        assert!(!idle1.displaced_another());
        // Full: the next one displaces the oldest unproven (idle1), never
        // the proven viewer.
        let new1 = limiter.admit(ip(4)).unwrap();
        assert!(new1.displaced_another());
        assert!(is_displaced(&idle1));
        assert!(!is_displaced(&idle2) && !is_displaced(&viewer));
        assert_eq!(
            limiter.open_total(),
            4,
            "idle1 holds its place until it closes"
        );
        drop(idle1);
        assert_eq!(limiter.open_total(), 3);
        new1.prove();
        let new2 = limiter.admit(ip(5)).unwrap();
        assert!(is_displaced(&idle2));
        drop(idle2);
        new2.prove();
        // Only proven connections: refused as before.
        assert_eq!(limiter.admit(ip(6)).unwrap_err(), Refused::Total);
        assert_eq!(limiter.unproven(), 0);
        drop((viewer, new1, new2));
        assert_eq!(limiter.open(ip(1)), (0, 0));
    }

    #[test]
    fn a_flood_faster_than_the_displaced_close_is_refused() {
        let limiter = ConnLimiter::new(100, 0);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let mut held: Vec<Slot> = (0..100).map(|_| limiter.admit(ip).unwrap()).collect();
        // None of the displaced close: at most MAX_LEAVING more get in.
        for _ in 0..MAX_LEAVING {
            held.push(limiter.admit(ip).unwrap());
        }
        assert_eq!(limiter.admit(ip).unwrap_err(), Refused::Total);
        assert_eq!(held.iter().filter(|s| is_displaced(s)).count(), MAX_LEAVING);
        // They close: room again, and the counts come back to zero.
        held.retain(|s| !is_displaced(s));
        assert!(limiter.admit(ip).is_ok());
        drop(held);
        assert_eq!(limiter.open(ip), (0, 0));
        assert_eq!(limiter.unproven(), 0);
    }

    #[test]
    fn exempt_addresses_count_only_towards_the_total() {
        let edge: IpAddr = "192.0.2.1".parse().unwrap();
        let limiter = ConnLimiter::with_exempt(5, 2, Some(Arc::new(move |ip| ip == edge)));
        let slots: Vec<_> = (0..5).map(|_| limiter.admit(edge).unwrap()).collect();
        slots.iter().for_each(Slot::prove);
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
