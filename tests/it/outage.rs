//! A whole outage through the App in-process: the same tasks `tocsin run` starts, built
//! on a `ManualClock`, with a real HTTP target that goes down and up and a real SMTP
//! server (aiosmtpd). Hours of an outage (escalation at 15 minutes, the customer phase at
//! 3 hours) pass in an instant; probes, mail and the store stay real.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_of_an_outage_escalate_reach_customers_and_end_with_one_recovery_each() {
    let smtp = support::Smtp::start(None);
    let (target, up) = support::switchable_target().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("customers.csv"),
        "email,name,language,timezone\n\
         c0@example.com,Customer 0,en,Europe/Warsaw\n\
         c1@example.com,Klient 1,pl,Europe/Warsaw\n\
         c2@example.com,Kund 2,sv,Europe/Stockholm\n",
    )
    .unwrap();
    let yaml = support::shop_config(
        0,
        target,
        "customer_threshold: 3h\nescalation: default\naudience: customers",
        &format!(
            "escalation:
  default:
    - {{ after: 0m, to: [oncall@example.com] }}
    - {{ after: 15m, to: [lead@example.com] }}
audiences:
  customers: {{ csv: {csv} }}
mail:
  from: \"Example Status <status@example.com>\"
  smtp: \"smtp://127.0.0.1:{port}\"
  allow_plain: true
  timeout: 5s
",
            csv = d.join("customers.csv").display(),
            port = smtp.port,
        ),
    )
    .replace(
        "data_dir: ./var",
        &format!("data_dir: {}", d.join("var").display()),
    );
    let path = d.join("probes.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let tocsin = support::InProcess::start(&path, &[]).await;
    let (clock, engine) = (tocsin.clock.clone(), tocsin.engine.clone());

    // Down: two failed rounds open the incident; on-call hears at once.
    up.store(false, Ordering::SeqCst);
    let got = smtp.wait_for(1, WITHIN).await;
    assert_eq!(got[0], "oncall@example.com | [tocsin] Web shop is DOWN");

    // Fifteen minutes later, still unacknowledged: the lead.
    clock.advance(Duration::from_secs(16 * 60));
    let got = smtp.wait_for(2, WITHIN).await;
    assert_eq!(
        got[1],
        "lead@example.com | [tocsin] Web shop is DOWN, unacknowledged (escalation level 1)"
    );
    assert_eq!(
        engine.snapshot().status("shop"),
        tocsin::incident::Status::Down
    );

    // Three hours in: the customer phase, one mail to each customer.
    clock.advance(Duration::from_secs(3 * 3600));
    for c in ["c0@example.com", "c1@example.com", "c2@example.com"] {
        smtp.wait_for_text(c, 1, WITHIN).await;
    }
    assert_eq!(smtp.subjects().len(), 5, "{:#?}", smtp.subjects());

    // Recovery: staff who were told get one "resolved", each customer one recovery mail.
    up.store(true, Ordering::SeqCst);
    smtp.wait_for_text("UP again", 1, WITHIN).await;
    for c in ["c0@example.com", "c1@example.com", "c2@example.com"] {
        smtp.wait_for_text(c, 2, WITHIN).await;
    }
    let subjects = smtp.subjects();
    assert_eq!(subjects.len(), 9, "{subjects:#?}");
    assert!(
        subjects[5..].iter().any(|s| s.starts_with(
            "oncall@example.com,lead@example.com | [tocsin] Web shop is UP again after 3h"
        )),
        "the outage's length is the clock's: {subjects:#?}"
    );

    tocsin.stop().await;
}
