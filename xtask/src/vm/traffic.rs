//! The traffic listener outside the guest: each NIC of the DPDK guest sends its frames to a UDP
//! port of the host (QEMU's socket backend), where a thread per path stamps the arrival of every
//! frame testpmd generated on the host's monotonic clock. Independent of the guest, the agent
//! and testpmd. The guest kernel's own frames on the NetVSC stand-in (neighbour discovery and
//! the like) are not testpmd's, and are left out.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Which NIC a frame left the guest by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// fail-safe's tap fallback, out through the virtio NetVSC stand-in.
    Synthetic,
    /// The VF stand-in.
    Vf,
}

/// The IPv4 source address of testpmd's txonly frames (`--tx-ip`, testpmd's default too).
pub const TESTPMD_SOURCE: [u8; 4] = [198, 18, 0, 1];

/// Whether `frame` (an Ethernet frame, as QEMU's socket backend sends it) is one of testpmd's
/// txonly frames: IPv4 from [`TESTPMD_SOURCE`], UDP.
pub fn is_testpmd_frame(frame: &[u8]) -> bool {
    const IPV4: [u8; 2] = [0x08, 0x00];
    const UDP: u8 = 17;
    frame.len() >= 34 && frame[12..14] == IPV4 && frame[23] == UDP && frame[26..30] == TESTPMD_SOURCE
}

/// Arrivals of both paths, as offsets from the listener's start.
pub struct Listener {
    pub synthetic_port: u16,
    pub vf_port: u16,
    start: Instant,
    arrivals: Arc<Mutex<Vec<(Duration, Path)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Listener {
    /// Binds two UDP ports on 127.0.0.1 (the OS picks them; QEMU's backend also binds the port
    /// after each, so ports whose successor is taken are skipped).
    pub fn start() -> anyhow::Result<Listener> {
        let start = Instant::now();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut ports = Vec::new();
        let mut threads = Vec::new();
        for path in [Path::Synthetic, Path::Vf] {
            let socket = bind_with_free_successor()?;
            ports.push(socket.local_addr()?.port());
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            // Frames come in bursts; a large buffer keeps the host from dropping them.
            let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &(8 << 20));
            let (arrivals, stop) = (arrivals.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    match socket.recv(&mut buf) {
                        Ok(length) if is_testpmd_frame(&buf[..length]) => {
                            let at = start.elapsed();
                            arrivals.lock().expect("arrivals").push((at, path));
                        }
                        _ => {}
                    }
                }
            }));
        }
        Ok(Listener { synthetic_port: ports[0], vf_port: ports[1], start, arrivals, stop, threads })
    }

    /// Now, on the listener's clock.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Arrivals between `from` and `to`, in order.
    pub fn between(&self, from: Duration, to: Duration) -> Vec<(Duration, Path)> {
        let mut got: Vec<(Duration, Path)> =
            self.arrivals.lock().expect("arrivals").iter().filter(|(at, _)| *at >= from && *at < to).copied().collect();
        got.sort_by_key(|(at, _)| *at);
        got
    }

    /// Forgets every arrival so far (between runs).
    pub fn clear(&self) {
        self.arrivals.lock().expect("arrivals").clear();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn bind_with_free_successor() -> anyhow::Result<UdpSocket> {
    for _ in 0..50 {
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding a UDP port for the traffic listener")?;
        let port = socket.local_addr()?.port();
        if port < u16::MAX && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(socket);
        }
    }
    anyhow::bail!("no UDP port with a free successor on 127.0.0.1")
}

/// What the traffic did around one plug.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Switch {
    /// Frames by each path before the VF's first frame (the synthetic path) and from it on.
    pub synthetic_frames: usize,
    pub vf_frames: usize,
    /// From the last frame of the synthetic path to the first of the VF's, ms (None: no VF
    /// frame, or no synthetic frame before it).
    pub gap_ms: Option<f64>,
    /// The longest silence between two consecutive frames of either path, ms.
    pub longest_gap_ms: f64,
}

/// The switch from the synthetic path to the VF in `arrivals` (sorted).
pub fn switch(arrivals: &[(Duration, Path)]) -> Switch {
    let first_vf = arrivals.iter().position(|(_, p)| *p == Path::Vf);
    let synthetic_frames = arrivals[..first_vf.unwrap_or(arrivals.len())].len();
    let vf_frames = arrivals.iter().filter(|(_, p)| *p == Path::Vf).count();
    let gap_ms = first_vf.filter(|i| *i > 0).map(|i| (arrivals[i].0 - arrivals[i - 1].0).as_secs_f64() * 1e3);
    let longest_gap_ms = arrivals.windows(2).map(|w| (w[1].0 - w[0].0).as_secs_f64() * 1e3).fold(0.0, f64::max);
    Switch { synthetic_frames, vf_frames, gap_ms, longest_gap_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64, path: Path) -> (Duration, Path) {
        (Duration::from_millis(ms), path)
    }

    /// A txonly frame as testpmd 22.11 builds it: Ethernet, IPv4 198.18.0.1 → 198.18.0.2, UDP
    /// 9 → 9, 64 bytes.
    fn txonly_frame() -> Vec<u8> {
        let mut frame = vec![0u8; 64];
        frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0]);
        frame[6..12].copy_from_slice(&[0x52, 0x54, 0, 0xaa, 0, 1]);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[23] = 17;
        frame[26..30].copy_from_slice(&TESTPMD_SOURCE);
        frame[30..34].copy_from_slice(&[198, 18, 0, 2]);
        frame
    }

    #[test]
    fn only_testpmds_frames_are_counted() {
        let frame = txonly_frame();
        assert!(is_testpmd_frame(&frame));
        let mut ipv6 = frame.clone();
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        let mut tcp = frame.clone();
        tcp[23] = 6;
        let mut other_source = frame.clone();
        other_source[26..30].copy_from_slice(&[10, 0, 0, 1]);
        for not_ours in [&ipv6[..], &tcp, &other_source, &frame[..33]] {
            assert!(!is_testpmd_frame(not_ours), "{not_ours:?}");
        }
    }

    #[test]
    fn the_switch_is_the_gap_before_the_vfs_first_frame() {
        let s = switch(&[at(0, Path::Synthetic), at(10, Path::Synthetic), at(50, Path::Vf), at(51, Path::Vf)]);
        assert_eq!((s.synthetic_frames, s.vf_frames), (2, 2));
        assert_eq!(s.gap_ms, Some(40.0));
        assert_eq!(s.longest_gap_ms, 40.0);
        let none = switch(&[at(0, Path::Synthetic), at(70, Path::Synthetic)]);
        assert_eq!((none.gap_ms, none.vf_frames, none.longest_gap_ms), (None, 0, 70.0));
        assert_eq!(switch(&[at(5, Path::Vf)]).gap_ms, None);
    }
}
