use super::*;

const ETH1: &str = "4179c815-5d8a-4915-976e-9ea2378e382b";

fn line(recorder: &mut KernelRecorder, at_us: u64, text: &str) -> Vec<Noted> {
    let moment = Moment::parse(&format!("hv_netvsc {ETH1} eth1: {text}")).expect("an hv_netvsc line");
    recorder.moment(at_us, &moment, "eth1")
}

#[test]
fn an_outage_runs_from_the_vf_leaving_to_the_data_path_back_on_it() {
    let mut recorder = KernelRecorder::new(FLAP_WINDOW_US, true);
    let switched = |to_vf| Noted::Switched { netvsc: "eth1".into(), to_vf };
    assert_eq!(line(&mut recorder, 10, "Data path switched to VF: enP1s2"), [switched(true)], "no outage at boot");
    assert_eq!(line(&mut recorder, 11, "VF slot 2 added"), []);
    assert_eq!(
        line(&mut recorder, 100, "Data path switched from VF: enP1s2"),
        [Noted::Began { netvsc: "eth1".into() }, switched(false), Noted::Flapped { netvsc: "eth1".into() }],
        "90 µs after the switch to the VF: a flap too"
    );
    assert_eq!(line(&mut recorder, 107, "VF unregistering: enP1s2"), []);
    assert_eq!(line(&mut recorder, 2600, "VF slot 2 removed"), []);
    assert_eq!(line(&mut recorder, 60_000_100, "VF slot 2 added"), []);
    let returned = line(&mut recorder, 63_000_000, "VF registering: eth2");
    let joined = Moment::parse("mlx5_core 0b99:00:02.0 eth2: joined to eth1").unwrap();
    assert_eq!(recorder.moment(63_000_040, &joined, "eth1"), [], "the VF's driver: its time, nothing noted");
    let want = KernelOutage {
        netvsc: "eth1".into(),
        vmbus_id: ETH1.into(),
        vf: Some("enP1s2".into()),
        data_path_from_vf_us: Some(100),
        vf_unregistering_us: Some(107),
        slot_removed_us: Some(2600),
        slot_added_us: Some(60_000_100),
        vf_registering_us: Some(63_000_000),
        vf_joined_us: Some(63_000_040),
        switch_to_vf_failed_us: None,
        data_path_to_vf_us: Some(63_600_000),
        new_vf: Some("enP1s2np0".into()),
        flap: true,
    };
    let registered =
        KernelOutage { vf_joined_us: None, data_path_to_vf_us: None, new_vf: Some("eth2".into()), ..want.clone() };
    assert_eq!(returned, [Noted::Returned(registered)], "the absence is known once the VF registers");
    assert_eq!(
        line(&mut recorder, 63_600_000, "Data path switched to VF: enP1s2np0"),
        [switched(true), Noted::Ended(want.clone())]
    );
    assert_eq!(want.absent_s(), Some(62.9999));
    assert_eq!(want.back_to_data_path_s(), Some(0.6));
    assert_eq!(recorder.outages(), [want]);
}

#[test]
fn a_vf_leaving_again_before_the_switch_ends_the_unfinished_outage() {
    let mut recorder = KernelRecorder::new(FLAP_WINDOW_US, true);
    line(&mut recorder, 100, "VF unregistering: enP1s2");
    line(&mut recorder, 200, "VF registering: enP1s2");
    let unfinished = KernelOutage {
        netvsc: "eth1".into(),
        vmbus_id: ETH1.into(),
        vf: Some("enP1s2".into()),
        vf_unregistering_us: Some(100),
        vf_registering_us: Some(200),
        new_vf: Some("enP1s2".into()),
        ..KernelOutage::default()
    };
    assert_eq!(
        line(&mut recorder, 300, "VF unregistering: enP1s2"),
        [Noted::Ended(unfinished), Noted::Began { netvsc: "eth1".into() }],
        "ended (its line and metrics) without a switch back"
    );
    let starts: Vec<(u64, Option<u64>)> =
        recorder.outages().iter().map(|o| (o.start_us(), o.vf_registering_us)).collect();
    assert_eq!(starts, [(100, Some(200)), (300, None)]);
}

#[test]
fn leaving_the_vf_soon_after_switching_to_it_is_a_flap() {
    let mut recorder = KernelRecorder::new(FLAP_WINDOW_US, true);
    let began = Noted::Began { netvsc: "eth1".into() };
    let from = Noted::Switched { netvsc: "eth1".into(), to_vf: false };
    line(&mut recorder, 1_000_000, "Data path switched to VF: enP1s2");
    assert_eq!(
        line(&mut recorder, 1_000_000 + FLAP_WINDOW_US - 1, "Data path switched from VF: enP1s2"),
        [began.clone(), from.clone(), Noted::Flapped { netvsc: "eth1".into() }]
    );
    line(&mut recorder, 30_000_000, "Data path switched to VF: enP1s2");
    assert_eq!(line(&mut recorder, 30_000_000 + FLAP_WINDOW_US, "Data path switched from VF: enP1s2"), [began, from]);
    let flaps: Vec<bool> = recorder.outages().iter().map(|o| o.flap).collect();
    assert_eq!(flaps, [true, false]);
}

#[test]
fn the_flap_window_is_the_one_given() {
    let mut recorder = KernelRecorder::new(1_000_000, true);
    line(&mut recorder, 1_000_000, "Data path switched to VF: enP1s2");
    let noted = line(&mut recorder, 2_000_000, "Data path switched from VF: enP1s2");
    assert!(!noted.contains(&Noted::Flapped { netvsc: "eth1".into() }), "1 s after, with a 1 s window: {noted:?}");
    line(&mut recorder, 3_000_000, "Data path switched to VF: enP1s2");
    let noted = line(&mut recorder, 3_999_999, "Data path switched from VF: enP1s2");
    assert!(noted.contains(&Noted::Flapped { netvsc: "eth1".into() }), "{noted:?}");
}

#[test]
fn a_failed_switch_is_noted_and_the_outage_stays_open_until_the_switch() {
    let mut recorder = KernelRecorder::new(FLAP_WINDOW_US, true);
    line(&mut recorder, 100, "VF unregistering: enP1s2");
    line(&mut recorder, 200, "VF registering: enP1s2");
    let failed = |to_vf| Noted::SwitchFailed { netvsc: "eth1".into(), to_vf };
    assert_eq!(line(&mut recorder, 300, "Data path failed to switch to VF: enP1s2, err: -110"), [failed(true)]);
    assert_eq!(line(&mut recorder, 350, "Data path failed to switch to VF: enP1s2, err: -110"), [failed(true)]);
    let open: Vec<(Option<u64>, Option<u64>)> =
        recorder.outages().iter().map(|o| (o.switch_to_vf_failed_us, o.data_path_to_vf_us)).collect();
    assert_eq!(open, [(Some(300), None)], "the first failure's time; still open");
    let noted = line(&mut recorder, 400, "Data path switched to VF: enP1s2");
    let ended: Vec<Option<u64>> = noted
        .iter()
        .filter_map(|n| match n {
            Noted::Ended(o) => Some(o.switch_to_vf_failed_us),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [Some(300)]);
    assert_eq!(
        line(&mut recorder, 500, "Data path failed to switch from VF: enP1s2, err: -5"),
        [failed(false)],
        "a failure to leave the VF begins no outage"
    );
    assert_eq!(recorder.outages().len(), 1);
}

#[test]
fn a_join_outside_a_return_changes_nothing() {
    let mut recorder = KernelRecorder::new(FLAP_WINDOW_US, true);
    let joined = Moment::parse("mlx5_core 0b99:00:02.0 eth2: joined to eth1").unwrap();
    line(&mut recorder, 100, "VF unregistering: enP1s2");
    assert_eq!(recorder.moment(150, &joined, "eth1"), []);
    assert_eq!(recorder.outages()[0].vf_joined_us, None, "the VF is not back: not its join");
}

#[test]
fn other_drivers_lines_change_nothing() {
    let mut recorder = KernelRecorder::new(FLAP_WINDOW_US, true);
    let joined = Moment::parse("mana 7870:00:00.0 eth0: joined to e2").unwrap();
    assert_eq!(recorder.moment(1, &joined, "e2"), []);
    assert_eq!(recorder.outages(), []);
}
