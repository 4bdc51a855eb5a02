//! Decoding one link message as the kernel sends it, the agent's way (header and the attributes
//! it uses) against `netlink-packet-route`'s full decode: the reason the agent has a decoder of
//! its own (system/rtnetlink.rs). The message is the kernel's own, with statistics as a broadcast
//! carries them: a dump of the links of the benchmark's network namespace, its first Ethernet
//! link on a parent device (a NIC, as a VF is; else the first Ethernet link, else `lo`).
//!
//! `cargo bench -p netvsc-user --bench decode`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use netlink_packet_core::Parseable as _;
use netlink_packet_route::link::{LinkLayerType, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netvsc_user::system::rtnetlink::{decode_link, dump, RTM_NEWLINK};

/// The payload of the kernel's `RTM_NEWLINK` for one link, and the link's name.
fn kernel_link_message() -> (Vec<u8>, String) {
    let mut links = Vec::new();
    dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), |message_type, payload| {
        if message_type == RTM_NEWLINK {
            links.push(payload.to_vec());
        }
    })
    .expect("dumping the links of this network namespace");
    let ethernet = |payload: &Vec<u8>| {
        let message = LinkMessage::parse(payload.as_slice()).expect("the kernel's link message");
        message.header.link_layer_type == LinkLayerType::Ether
    };
    let on_a_device = |payload: &&Vec<u8>| decode_link(payload).is_some_and(|l| l.parent.is_some());
    let payload = (links.iter().filter(|p| ethernet(p)).find(on_a_device))
        .or(links.iter().find(|p| ethernet(p)))
        .or(links.first())
        .expect("at least lo")
        .clone();
    let name = decode_link(&payload).and_then(|l| l.name).unwrap_or_default();
    (payload, name)
}

fn decode_one_link_message(c: &mut Criterion) {
    let (payload, name) = kernel_link_message();
    let mut group = c.benchmark_group(format!("decode_link_message/{name}_{}_bytes", payload.len()));
    group.bench_function("agent", |b| b.iter(|| black_box(decode_link(black_box(&payload)))));
    group.bench_function("netlink_packet_route", |b| {
        b.iter(|| black_box(LinkMessage::parse(black_box(payload.as_slice())).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, decode_one_link_message);
criterion_main!(benches);
