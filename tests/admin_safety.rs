//! The admin listener stays safe: a page of another site cannot change backends.

mod support;

use support::*;

fn post(s: &Setup, path: &str, extra: &str) -> String {
    let mut c = RawConn::open(s.lb.admin_addr().unwrap());
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            s.lb.admin_addr().unwrap()
        )
        .as_bytes(),
    );
    c.response().0
}

#[test]
fn a_post_from_another_sites_page_is_refused() {
    let s = Setup::new(2, |c| c.admin = Some("127.0.0.1:0".parse().unwrap()));
    let head = post(&s, "/backends/0/drain", "Origin: http://evil.example\r\n");
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(!s.lb.shared().backends.snapshot()[0].is_draining());
    // The status page's own buttons (same origin) and clients without Origin still work.
    let same = format!("Origin: http://{}\r\n", s.lb.admin_addr().unwrap());
    assert!(post(&s, "/backends/0/drain", &same).starts_with("HTTP/1.1 200"));
    assert!(post(&s, "/backends/0/enable", "").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_taken_default_admin_port_is_skipped_but_an_asked_for_one_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let demos = demos(1);
    let mut c = config(&urls(&demos));
    c.admin = Some(taken.local_addr().unwrap());
    // The default address, taken by another balancer: start without the admin listener.
    let lb = load_balancer::server::Balancer::start(c.clone()).unwrap();
    assert_eq!(lb.admin_addr(), None);
    assert_eq!(get(&format!("http://{}/", lb.addr())).0, 200);
    drop(lb);
    // Asked for with --admin: start-up fails, naming the address.
    c.admin_required = true;
    let err = load_balancer::server::Balancer::start(c).unwrap_err();
    assert!(
        err.to_string()
            .contains(&taken.local_addr().unwrap().to_string()),
        "{err}"
    );
}
