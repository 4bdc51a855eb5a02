//! `cargo xtask fuzz --capture-seeds`: real rtnetlink messages as the kernel sends them, for the
//! rtnetlink target's seeds. A link and an address dump of this machine's own namespace and of
//! a network namespace holding links of several kinds (veth pair, bridge with a port, macvlan,
//! IPv4 and IPv6 addresses; this machine's kernel has no VLAN or dummy module); each datagram is saved whole and each message alone.

use std::path::Path;

use anyhow::{bail, Context as _};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub fn run(corpus: &Path) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("capturing needs root (a network namespace of its own)");
    }
    std::fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let netns = netvsc_testkit::netns::Netns::new("seeds")?;
    for args in [
        &["link", "add", "veth-a", "address", "00:15:5d:00:00:01", "type", "veth", "peer", "name", "veth-b"][..],
        &["link", "add", "br0", "type", "bridge"],
        &["link", "set", "veth-a", "master", "br0"],
        &["link", "add", "link", "veth-b", "name", "mv0", "type", "macvlan", "mode", "bridge"],
        &["link", "set", "veth-b", "up"],
        &["addr", "add", "10.0.0.4/24", "dev", "veth-b"],
        &["addr", "add", "fd00::4/64", "dev", "veth-b", "nodad"],
    ] {
        netns.ip(args)?;
    }
    let own = dumps()?;
    let path = format!("/run/netns/{}", netns.name());
    // A thread of its own enters the namespace: sockets belong to their creator's namespace.
    let namespaced = std::thread::spawn(move || -> anyhow::Result<_> {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).context("entering the namespace")?;
        dumps()
    })
    .join()
    .expect("the capture thread")?;
    let mut saved = 0;
    for (origin, datagrams) in [("host", own), ("netns", namespaced)] {
        for (n, (kind, datagram)) in datagrams.iter().enumerate() {
            let mut seeds = vec![(format!("kernel-{origin}-{kind}-dump-{n}"), &datagram[..])];
            for (m, message) in split(datagram).enumerate() {
                seeds.push((format!("kernel-{origin}-{kind}-{n}-{m}"), message));
            }
            for (name, bytes) in seeds {
                std::fs::write(corpus.join(&name), bytes).with_context(|| format!("writing {name}"))?;
                saved += 1;
            }
        }
    }
    println!("xtask fuzz: {saved} seeds captured into {}", corpus.display());
    Ok(())
}

/// The datagrams of a link dump and of an address dump, tagged `link` and `addr`, up to the
/// kernel's end-of-dump message.
fn dumps() -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut all = Vec::new();
    for (kind, request) in [
        ("link", RouteNetlinkMessage::GetLink(LinkMessage::default())),
        ("addr", RouteNetlinkMessage::GetAddress(AddressMessage::default())),
    ] {
        all.extend(dump(request)?.into_iter().map(|datagram| (kind, datagram)));
    }
    Ok(all)
}

fn dump(request: RouteNetlinkMessage) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket.bind_auto().context("binding it")?;
    socket.connect(&SocketAddr::new(0, 0)).context("connecting it")?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut message = NetlinkMessage::new(header, request.into());
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0).context("sending the dump request")?;
    let mut datagrams = Vec::new();
    loop {
        let mut datagram = Vec::with_capacity(256 * 1024);
        socket.recv(&mut datagram, 0).context("receiving the dump")?;
        // NLMSG_DONE ends the dump; it is kept as the last datagram's message.
        let done = split(&datagram).any(|m| m.get(4..6) == Some(&3u16.to_ne_bytes()));
        datagrams.push(datagram);
        if done {
            return Ok(datagrams);
        }
    }
}

/// The messages of a datagram, header included, by their lengths.
fn split(datagram: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let length = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if length < 16 || length > rest.len() {
            return None;
        }
        let (message, tail) = rest.split_at(length.next_multiple_of(4).min(rest.len()));
        rest = tail;
        Some(&message[..length])
    })
}
