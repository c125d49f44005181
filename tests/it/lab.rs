//! The lab (issue 27): every routing decision says why, strategies and weights switch live
//! through the admin API, and each experiment of the guide's lab page holds as it claims.

use crate::support::process::Launch;
use crate::support::*;
use load_balancer::demo::{Fleet, page};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

const LOAD_WAIT: Duration = Duration::from_secs(30);

fn status_json(admin: SocketAddr) -> String {
    let (status, body) = get(&format!("http://{admin}/status.json"));
    assert_eq!(status, 200, "{body}");
    body
}

/// The `why` texts of `/status.json`'s recent decisions, oldest first.
fn whys(json: &str) -> Vec<String> {
    json.split("\"text\":\"")
        .skip(1)
        .map(|rest| rest[..rest.find("\"}").unwrap()].to_string())
        .collect()
}

/// Requests each demo backend has answered.
fn counts(fleet: &Fleet) -> Vec<u64> {
    fleet.backends.iter().map(|d| d.requests()).collect()
}

/// Runs 4 clients against `lb` until `n` answers came (none may fail); returns how many
/// requests each backend got meanwhile.
fn load(fleet: &Fleet, lb: &Balancer, n: u64) -> Vec<u64> {
    let before = counts(fleet);
    let url = format!("http://{}/", lb.addr());
    let clients = LoadClients::start(4, |_| url.clone(), |_| true);
    clients.wait_for_more(n, LOAD_WAIT);
    clients.finish();
    counts(fleet)
        .iter()
        .zip(before)
        .map(|(a, b)| a - b)
        .collect()
}

fn switch(admin: SocketAddr, name: &str) {
    let (status, _, body) = admin_post(admin, "/strategy", &format!("name={name}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(&format!("{{\"strategy\":\"{name}\"")),
        "{body}"
    );
}

#[test]
fn the_demo_with_red_stopped_says_who_chose_and_why_red_was_skipped() {
    // The acceptance run: `cargo run -- --demo 3 --explain`, Red stopped by its drill.
    let mut lb = Launch::demo()
        .args(&["--demo", "3", "--admin", "127.0.0.1:0", "--explain"])
        .start();
    let admin = lb.admin();
    assert_eq!(admin_post(admin, "/demo/red/stop", "").0, 200);
    for _ in 0..6 {
        assert_eq!(get(&format!("http://{}/", lb.addr)).0, 200);
    }
    let json = status_json(admin);
    assert!(json.contains("\"strategy\":\"round-robin\""), "{json}");
    let whys = whys(&json);
    assert_eq!(whys.len(), 6, "{json}");
    // The first request met Red before anybody knew it was down: tried, refused, and on.
    assert!(
        whys[0].ends_with("skipped Red: already tried for this request, connection refused"),
        "{whys:?}"
    );
    // After it, Red is skipped as DOWN, with the reason and since when.
    let down = whys
        .iter()
        .filter(|w| w.contains("skipped Red: DOWN since "))
        .count();
    assert!(down >= 2, "{whys:?}");
    assert!(
        whys.iter()
            .all(|w| w.starts_with("round robin: next after ")),
        "{whys:?}"
    );
    assert!(
        json.contains("\"state\":\"DOWN\",\"reason\":\"Red: DOWN since "),
        "{json}"
    );
    assert!(
        json.contains("connection refused, 1 failed request in a row"),
        "{json}"
    );
    // --explain: the console line ends with the same reason.
    let line = lb.line_with("skipped http://");
    assert!(
        line.contains(" why=\"round robin: next after http://"),
        "{line}"
    );
}

#[test]
fn switching_the_strategy_under_load_fails_no_request() {
    let (fleet, lb) = fleet_setup(3, with_admin);
    let admin = admin_addr(&lb);
    let url = format!("http://{}/", lb.addr());
    let clients = LoadClients::start(4, |_| url.clone(), |_| true);
    clients.wait_for_more(20, LOAD_WAIT);
    for name in [
        "least-conn",
        "weighted",
        "ip-hash",
        "cookie",
        "round-robin",
        "least-conn",
    ] {
        switch(admin, name);
        clients.wait_for_more(20, LOAD_WAIT);
    }
    clients.finish();
    let json = status_json(admin);
    assert!(json.starts_with("{\"strategy\":\"least-conn\""), "{json}");
    let last = whys(&json).pop().unwrap();
    assert!(last.starts_with("least-conn: "), "{last}");
    // Marked on every backend's chart; the pools and health are the same backends' still.
    assert!(
        json.contains("\"state\":\"STRATEGY\",\"reason\":\"ip-hash\""),
        "{json}"
    );
    assert!(counts(&fleet).iter().all(|&n| n > 0));
    assert!((0..3).all(|i| backend_up(&lb, i)));
    // Bad requests get a clear answer; the admin's rules apply as to every change.
    assert_eq!(admin_post(admin, "/strategy", "name=fastest").0, 400);
    assert_eq!(admin_post(admin, "/strategy", "colour=red").0, 400);
    assert_eq!(admin_post(admin, "/strategy", "").0, 400);
    assert_eq!(get(&format!("http://{admin}/strategy")).0, 405);
    assert_eq!(admin_post(admin, "/backends/9/weight", "weight=2").0, 404);
    for bad in ["weight=0", "weight=1001", "weight=x", "weight="] {
        assert_eq!(admin_post(admin, "/backends/0/weight", bad).0, 400, "{bad}");
    }
    // The status page's own forms come back to it.
    let (status, location, _) = admin_post(admin, "/strategy", "name=cookie&then=status");
    assert_eq!((status, location.as_deref()), (303, Some("/status")));
}

#[test]
fn the_admin_token_guards_the_switches() {
    let (_fleet, lb) = fleet_setup(2, |c| {
        with_admin(c);
        c.admin_token = Some("s3cret".into());
    });
    let admin = admin_addr(&lb);
    assert_eq!(admin_post(admin, "/strategy", "name=least-conn").0, 401);
    assert_eq!(admin_post(admin, "/backends/0/weight", "weight=3").0, 401);
    assert_eq!(lb.shared().backends.strategy().name(), "round-robin");
    assert_eq!(backends(&lb)[0].weight(), 1);
}

#[test]
fn experiment_1_least_conn_sends_slowed_red_less_than_a_third_round_robin_half() {
    let (fleet, lb) = fleet_setup(2, with_admin);
    let admin = admin_addr(&lb);
    assert_eq!(admin_post(admin, "/demo/red/slow/500", "").0, 200);
    // Round robin: every other request, whatever Red is doing.
    let rr = load(&fleet, &lb, 16);
    let share = rr[0] as f64 / (rr[0] + rr[1]) as f64;
    assert!((0.4..=0.6).contains(&share), "round robin: red {rr:?}");
    // Least-conn: Red gets a request only when it has no more in flight than Blue.
    switch(admin, "least-conn");
    let lc = load(&fleet, &lb, 40);
    assert!(lc[0] * 3 < lc[0] + lc[1], "least-conn: red {lc:?}");
    // The reasons say so: Blue idle, Red busy.
    let whys = whys(&status_json(admin));
    let busy = |w: &String| {
        w.strip_prefix("least-conn: Blue 0 active, Red ")
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
    };
    assert!(whys.iter().any(busy), "{whys:?}");
}

#[test]
fn experiment_2_weighted_three_to_one_draws_red_red_blue_red() {
    let (_fleet, lb) = fleet_setup(2, with_admin);
    let admin = admin_addr(&lb);
    switch(admin, "weighted");
    let (status, _, body) = admin_post(admin, "/backends/0/weight", "weight=3");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"weight\":3"), "{body}");
    let (red, blue) = (page(0), page(1));
    // current weights (+3, +1), the winner, then -4 for the winner:
    //   3 1 -> Red   2 2 -> Red   1 3 -> Blue   4 0 -> Red   (all back to 0)
    let bodies: Vec<String> = (0..8)
        .map(|_| get(&format!("http://{}/", lb.addr())).1)
        .collect();
    let expected = [&red, &red, &blue, &red, &red, &red, &blue, &red];
    assert!(bodies.iter().zip(expected).all(|(b, e)| b == e));
    let whys = whys(&status_json(admin));
    assert_eq!(
        whys[..4],
        [
            "weighted: Red's turn (current weight 3 of 4)",
            "weighted: Red's turn (current weight 2 of 4)",
            "weighted: Blue's turn (current weight 3 of 4)",
            "weighted: Red's turn (current weight 4 of 4)",
        ]
    );
    let json = status_json(admin);
    assert!(
        json.contains("\"state\":\"WEIGHT\",\"reason\":\"3\""),
        "{json}"
    );
}

/// The demo backend whose page `body` is.
fn which(body: &str) -> usize {
    (0..3).find(|&i| page(i) == body).expect("a demo page")
}

#[test]
fn experiment_3_ip_hash_clients_come_back_and_cookie_clients_stay_where_they_moved() {
    let (_fleet, lb) = fleet_setup(3, |c| {
        with_admin(c);
        set_strategy(c, "ip-hash");
        c.fail_timeout = Duration::from_millis(200);
    });
    let admin = admin_addr(&lb);
    let name = |i: usize| ["red", "blue", "green"][i];
    let url = format!("http://{}/", lb.addr());
    let at = || which(&get(&url).1);
    // This client (127.0.0.1) has its backend; another backend stopping does not move it.
    let home = at();
    let other = (home + 1) % 3;
    admin_post(admin, &format!("/demo/{}/stop", name(other)), "");
    assert!((0..4).all(|_| at() == home));
    admin_post(admin, &format!("/demo/{}/start", name(other)), "");
    // Its own backend stops: it moves, always to the same one (its second-highest score)...
    admin_post(admin, &format!("/demo/{}/stop", name(home)), "");
    let moved = at();
    assert_ne!(moved, home);
    assert!((0..4).all(|_| at() == moved));
    // ...and once it is back (its trial request after --fail-timeout), so is the client.
    admin_post(admin, &format!("/demo/{}/start", name(home)), "");
    wait_for(Duration::from_secs(5), "the client back home", || {
        at() == home
    });

    // Cookies: the client moves with a new cookie, and stays there when its backend is back.
    switch(admin, "cookie");
    let request = |cookie: &str| {
        let mut c = connect(lb.addr());
        let line =
            format!("GET / HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
        c.write_all(line.as_bytes()).unwrap();
        let (head, body) = read_response(&mut c);
        let set = fields(&head, "set-cookie").pop();
        let token = set.map(|s| s[..s.find(';').unwrap()].to_string());
        (which(&String::from_utf8(body).unwrap()), token)
    };
    let (first, token) = request("theme=dark");
    let token = token.expect("a new client gets a cookie");
    assert_eq!(request(&token), (first, None));
    admin_post(admin, &format!("/demo/{}/stop", name(first)), "");
    let (moved, new_token) = request(&token);
    assert_ne!(moved, first);
    let new_token = new_token.expect("a cookie for the backend it moved to");
    admin_post(admin, &format!("/demo/{}/start", name(first)), "");
    wait_for(Duration::from_secs(5), "the first backend back up", || {
        request("theme=dark");
        backend_up(&lb, first)
    });
    assert_eq!(
        request(&new_token),
        (moved, None),
        "the client stays where it moved"
    );
    let whys = whys(&status_json(admin));
    assert!(
        whys.iter()
            .any(|w| w.starts_with("cookie: pinned by lb_backend=")),
        "{whys:?}"
    );
}
