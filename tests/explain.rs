//! `switchyard explain`: the ownership matrix, the field table and flow summaries.

use crate::util::{fixtures, switchyard};

#[test]
fn explains_the_valid_workspace() {
    let output = switchyard(&fixtures().join("valid"), &["explain"]);
    assert_eq!(output.code, 0, "{output:?}");
    let text = output.stdout;
    assert!(
        text.contains("object  marketplace  storefront\n------  -----------  ----------\noffer   SoT C U      consume\n"),
        "{text}"
    );
    assert!(
        text.contains("offer.listing_status  operator       yes\n"),
        "{text}"
    );
    assert!(
        text.contains("offers-to-storefront: moves offer records from marketplace to storefront. It is a near-real-time flow, polled every 30s"),
        "{text}"
    );
    assert!(
        text.contains("contract-violation goes to seller-support (request a correction), escalated to marketplace-ops after 24h"),
        "{text}"
    );
    assert!(
        text.contains("SLA: changes are delivered within 15m."),
        "{text}"
    );
}

#[test]
fn refuses_a_broken_workspace() {
    let output = switchyard(&fixtures().join("unknown-system"), &["explain"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("E0101"), "{output:?}");
}
