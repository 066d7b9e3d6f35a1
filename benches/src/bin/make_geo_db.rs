//! Writes a small MaxMind-format database for the load harness's geo-locked key.
//!
//! `make_geo_db OUT CIDR=CC[:City] [CIDR=CC[:City] …]`, e.g.
//! `make_geo_db geo.mmdb 127.0.0.0/8=US:San\ Francisco`.

use latchkey_gateway::geo::writer::MmdbWriter;
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, entries)) = args.split_first() else {
        eprintln!("usage: make_geo_db OUT CIDR=CC[:City] [CIDR=CC[:City] …]");
        exit(2);
    };
    let mut w = MmdbWriter::new("Latchkey-Bench-City");
    for e in entries {
        let Some((net, place)) = e.split_once('=') else {
            eprintln!("make_geo_db: {e:?} is not CIDR=CC[:City]");
            exit(2);
        };
        let (cc, city) = match place.split_once(':') {
            Some((cc, city)) => (cc, Some(city)),
            None => (place, None),
        };
        let net = net.parse().unwrap_or_else(|err| {
            eprintln!("make_geo_db: {net:?}: {err}");
            exit(2)
        });
        if let Err(err) = w.insert(net, cc, city) {
            eprintln!("make_geo_db: {e:?}: {err}");
            exit(2);
        }
    }
    if let Err(err) = w.write_to(out) {
        eprintln!("make_geo_db: cannot write {out}: {err}");
        exit(1);
    }
}
