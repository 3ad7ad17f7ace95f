//! Deterministic, realistic seed data for the simulated marketplace: offers with UTF-8 and
//! JSON-hostile titles, decimal prices, shared timestamps, and a fixed share of bad offers
//! (missing price, negative quantity, unknown currency, exact duplicates, ownership
//! violations). The same seed and count always give the same offers, in the same order.
//! It also seeds marketplace orders: baskets split into one order per seller leg, with
//! UTF-8 customer names, decimal prices and 1–3 lines, plus the fixed picks of orders whose
//! webhook events are redelivered or duplicated. This module only builds values; it owns no
//! state and knows nothing of HTTP.

use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::orders::{Address, Customer, Order, OrderLine, OrderState};

/// The first seeded `updated_at`: 2025-03-04T10:00:00Z.
const BASE_TIME: Timestamp = Timestamp::constant(1_741_082_400, 0);
/// The first offer ID; later ones grow by small random gaps, like a real sequence.
const FIRST_OFFER_ID: i64 = 100_000;
/// Shops are 2001..=2020.
const FIRST_SHOP_ID: i64 = 2001;
const SHOPS: i64 = 20;

const BRANDS: &[&str] = &[
    "Küchenprofi",
    "Müller & Söhne",
    "Brasserie Étoile",
    "Nordhaus",
    "Großmann",
    "Café Crème",
    "Ångström Labs",
    "Señor Chef",
    "Acme",
    "Bäckerei Weiß",
];

const CATALOG: &[(&str, &[&str])] = &[
    (
        "home/kitchen",
        &[
            "Chef's Knife 20 cm",
            "Crème Brûlée Torch",
            "Cast-Iron Skillet 28 cm",
            "Espresso Tamper 58 mm",
            "Weißwurst Pot",
            "Salad Spinner",
        ],
    ),
    (
        "home/bathroom",
        &[
            "Bath Towel Set",
            "Bamboo Soap Dish",
            "Rasierpinsel Dachshaar",
        ],
    ),
    (
        "garden/tools",
        &[
            "Pruning Shears",
            "Hose Reel 30 m",
            "Gartenschere Profi",
            "Rechen für Laub",
        ],
    ),
    (
        "electronics/audio",
        &[
            "Bluetooth Speaker",
            "Over-Ear Headphones",
            "Plattenspieler Riemenantrieb",
        ],
    ),
    (
        "sports/outdoor",
        &[
            "Trekking Poles",
            "Schlafsack −10 °C",
            "Camping Stove",
            "Fußball Größe 5",
        ],
    ),
    (
        "toys/games",
        &[
            "Puzzle 1000 Teile",
            "Wooden Train Set",
            "Jeu de Société Élégant",
        ],
    ),
];

/// Titles that break naive string templating: quotes, braces, backslashes.
const HOSTILE_TITLES: &[(&str, &str)] = &[
    ("home/kitchen", "12\" Pizza Stone {Pro}"),
    ("home/kitchen", "\"Bistro\" Café Chair {Set of 2}"),
    ("garden/tools", "Hose Adapter 3/4\" \\ 1/2\""),
    ("home/bathroom", "Shelf C:\\Bad\\Regal {{Weiß}}"),
];

const CURRENCIES: &[&str] = &[
    "EUR", "EUR", "EUR", "EUR", "EUR", "EUR", "USD", "USD", "GBP", "GBP",
];

/// How many offers of each bad kind a seed of `count` offers holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DefectCounts {
    pub(crate) missing_price: usize,
    pub(crate) negative_quantity: usize,
    pub(crate) unknown_currency: usize,
    pub(crate) duplicates: usize,
    pub(crate) ownership_violations: usize,
}

impl DefectCounts {
    /// About 2% of each kind, 1% ownership violations, rounded down so tiny seeds are clean.
    pub(crate) fn for_count(count: usize) -> Self {
        Self {
            missing_price: count * 2 / 100,
            negative_quantity: count * 2 / 100,
            unknown_currency: count * 2 / 100,
            duplicates: count * 2 / 100,
            ownership_violations: count / 100,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Defect {
    MissingPrice,
    NegativeQuantity,
    UnknownCurrency,
    OwnershipViolation,
}

/// Builds `count` offers from `seed`, in insertion order. Duplicates are appended last, so
/// each one follows its original in insertion order (and shares its `updated_at`).
pub(crate) fn offers(seed: u64, count: usize) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let defects = DefectCounts::for_count(count);
    let unique = count - defects.duplicates;
    // A third as many minute slots as offers: several offers share each timestamp, which is
    // what makes an inclusive `updated_since` cursor matter.
    let slots = (count / 3).max(1) as i64;
    let mut offer_id = FIRST_OFFER_ID;
    let mut offers: Vec<Map<String, Value>> = (0..unique)
        .map(|index| {
            offer_id += rng.random_range(1..=7);
            offer(&mut rng, index, offer_id, slots)
        })
        .collect();

    let mut order: Vec<usize> = (0..unique).collect();
    order.shuffle(&mut rng);
    let mut picks = order.into_iter();
    let plan = [
        (Defect::MissingPrice, defects.missing_price),
        (Defect::NegativeQuantity, defects.negative_quantity),
        (Defect::UnknownCurrency, defects.unknown_currency),
        (Defect::OwnershipViolation, defects.ownership_violations),
    ];
    for (defect, how_many) in plan {
        for index in picks.by_ref().take(how_many) {
            spoil(&mut offers[index], defect, &mut rng);
        }
    }
    let mut valid: Vec<usize> = picks.collect();
    valid.sort_unstable();
    let originals: Vec<usize> = valid
        .choose_multiple(&mut rng, defects.duplicates)
        .copied()
        .collect();
    for index in originals {
        let copy = offers[index].clone();
        offers.push(copy);
    }
    offers.into_iter().map(Value::Object).collect()
}

fn offer(rng: &mut StdRng, index: usize, offer_id: i64, slots: i64) -> Map<String, Value> {
    let shop_id = FIRST_SHOP_ID + rng.random_range(0..SHOPS);
    let brand = pick(rng, BRANDS);
    let (category, title) = if index % 37 == 5 {
        let (category, title) = HOSTILE_TITLES[(index / 37) % HOSTILE_TITLES.len()];
        (category, title.to_owned())
    } else {
        let (category, products) = CATALOG[rng.random_range(0..CATALOG.len())];
        let product = pick(rng, products);
        (category, format!("{brand} {product}"))
    };
    let description = format!(
        "{title} — von {brand}. Qualité garantie, spülmaschinengeeignet. Lieferumfang: 1 Stück."
    );
    let updated_at = BASE_TIME
        .checked_add(jiff::SignedDuration::from_mins(rng.random_range(0..slots)))
        .unwrap_or(BASE_TIME);
    let state_code = match rng.random_range(0..20) {
        0 => "1",
        1 => "2",
        2 => "10",
        _ => "11",
    };
    let quantity: i64 = if rng.random_bool(0.08) {
        0
    } else {
        rng.random_range(1..=250)
    };
    let mut offer = Map::new();
    offer.insert("offer_id".into(), json!(offer_id));
    offer.insert("shop_id".into(), json!(shop_id));
    offer.insert("shop_sku".into(), json!(shop_sku(rng, index)));
    offer.insert(
        "product_sku".into(),
        json!(format!("PRD-{:07}", rng.random_range(0..10_000_000))),
    );
    offer.insert("title".into(), json!(title));
    offer.insert("description".into(), json!(description));
    offer.insert("price".into(), json!(price(rng)));
    offer.insert("currency_iso_code".into(), json!(pick(rng, CURRENCIES)));
    offer.insert("quantity".into(), json!(quantity));
    offer.insert("state_code".into(), json!(state_code));
    offer.insert("category".into(), json!(category));
    offer.insert("updated_at".into(), json!(updated_at.to_string()));
    offer.insert("last_updated_by".into(), json!("marketplace"));
    offer
}

fn spoil(offer: &mut Map<String, Value>, defect: Defect, rng: &mut StdRng) {
    match defect {
        Defect::MissingPrice => {
            offer.shift_remove("price");
        }
        Defect::NegativeQuantity => {
            offer.insert("quantity".into(), json!(-rng.random_range(1..=5_i64)));
        }
        Defect::UnknownCurrency => {
            offer.insert("currency_iso_code".into(), json!("XYZ"));
        }
        Defect::OwnershipViolation => {
            offer.insert("last_updated_by".into(), json!("storefront"));
        }
    }
}

/// Mixed case like `SKU-Ab12-3`; the index suffix keeps SKUs unique even once lowercased.
fn shop_sku(rng: &mut StdRng, index: usize) -> String {
    let upper = char::from(b'A' + rng.random_range(0..26_u8));
    let lower = char::from(b'a' + rng.random_range(0..26_u8));
    let digits = rng.random_range(0..100);
    format!("SKU-{upper}{lower}{digits:02}-{index}")
}

/// A decimal string with 0, 1 or 2 fraction digits, as sellers really send them.
fn price(rng: &mut StdRng) -> String {
    let whole = rng.random_range(1..=999);
    match rng.random_range(0..4) {
        0 => format!("{whole}"),
        1 => format!("{whole}.{}", rng.random_range(0..10)),
        _ => format!("{whole}.{:02}", rng.random_range(0..100)),
    }
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

/// Mixed into the seed so orders come from their own random stream: adding orders to a seed
/// must not change its offers.
const ORDER_STREAM: u64 = 0x6f72_6465_7273;
/// Mixed into the seed for the webhook duplicate picks, for the same reason.
const EVENT_STREAM: u64 = 0x6576_656e_7473;
/// The first basket number; IDs look like `MKP-000123-A`.
const FIRST_BASKET: usize = 123;
/// The share of baskets bought from two or three sellers.
const SPLIT_SHARE: f64 = 0.3;

const FIRSTNAMES: &[&str] = &[
    "Zoë", "Léa", "Jürgen", "Søren", "Ana", "Mateo", "Chloé", "Oliver", "Siobhán", "Renée",
];
const LASTNAMES: &[&str] = &[
    "Müller",
    "Dubois",
    "O'Brien",
    "García",
    "Ólafsdóttir",
    "Smith",
    "Rossi",
    "Nowak",
    "Łukasiewicz",
    "van der Berg",
];
/// City, ISO country and the currency a customer there pays in.
const CITIES: &[(&str, &str, &str)] = &[
    ("Berlin", "DE", "EUR"),
    ("München", "DE", "EUR"),
    ("Köln", "DE", "EUR"),
    ("Paris", "FR", "EUR"),
    ("Saint-Étienne", "FR", "EUR"),
    ("Madrid", "ES", "EUR"),
    ("London", "GB", "GBP"),
    ("Manchester", "GB", "GBP"),
    ("New York", "US", "USD"),
];

/// Builds the orders of `baskets` customer baskets from `seed`, in insertion order: each
/// basket becomes one order per seller leg (about 30% of baskets have 2–3 sellers). Every
/// order is created at `now` and waits for acceptance until `now + deadline`.
pub(crate) fn orders(
    seed: u64,
    baskets: usize,
    now: Timestamp,
    deadline: SignedDuration,
) -> Vec<Order> {
    let mut rng = StdRng::seed_from_u64(seed ^ ORDER_STREAM);
    let acceptance_deadline = now.checked_add(deadline).unwrap_or(now);
    let mut orders = Vec::new();
    for basket in 0..baskets {
        let commercial_id = format!("MKP-{:06}", FIRST_BASKET + basket);
        let legs = if rng.random_bool(SPLIT_SHARE) {
            rng.random_range(2..=3)
        } else {
            1
        };
        // Distinct sellers per basket: a basket splits by seller, never within one.
        let shops = rand::seq::index::sample(&mut rng, SHOPS as usize, legs);
        let (city, country, currency) = CITIES[rng.random_range(0..CITIES.len())];
        let customer = Customer {
            customer_id: format!("CUST-{:05}", rng.random_range(1..100_000)),
            firstname: pick(&mut rng, FIRSTNAMES).to_owned(),
            lastname: pick(&mut rng, LASTNAMES).to_owned(),
            shipping_address: Address {
                city: city.to_owned(),
                country: country.to_owned(),
            },
        };
        for (leg, shop) in shops.into_iter().enumerate() {
            let letter = char::from(b'A' + leg as u8);
            let order_id = format!("{commercial_id}-{letter}");
            let order_lines: Vec<OrderLine> = (1..=rng.random_range(1..=3))
                .map(|line| order_line(&mut rng, &order_id, line))
                .collect();
            let total_cents = order_lines
                .iter()
                .map(|line| i64::from(line.quantity) * line.unit_cents)
                .sum();
            orders.push(Order {
                order_id,
                commercial_id: commercial_id.clone(),
                shop_id: FIRST_SHOP_ID + shop as i64,
                created_at: now,
                acceptance_deadline,
                order_state: OrderState::WaitingAcceptance,
                currency_iso_code: currency.to_owned(),
                total_price: decimal(total_cents),
                customer: customer.clone(),
                order_lines,
                updated_at: now,
            });
        }
    }
    orders
}

/// The orders (by insertion index among `legs`) whose webhook event is delivered twice with
/// the same event ID (about 2%), and those sent again as a new event (about 1%). Rounded up,
/// so any non-empty seed exercises both; the two picks never overlap.
pub(crate) fn duplicate_events(seed: u64, legs: usize) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed ^ EVENT_STREAM);
    let mut order: Vec<usize> = (0..legs).collect();
    order.shuffle(&mut rng);
    let redelivered = (legs * 2).div_ceil(100);
    let duplicated = legs.div_ceil(100).min(legs - redelivered.min(legs));
    let mut picks = order.into_iter();
    let redeliver = picks.by_ref().take(redelivered).collect();
    let duplicate = picks.take(duplicated).collect();
    (redeliver, duplicate)
}

/// A decimal string with two fraction digits from an amount in minor units.
pub(crate) fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

fn order_line(rng: &mut StdRng, order_id: &str, line: usize) -> OrderLine {
    let (_, products) = CATALOG[rng.random_range(0..CATALOG.len())];
    let brand = pick(rng, BRANDS);
    let product = pick(rng, products);
    // Most lines are one unit; multi-unit lines are what makes partial shipments possible.
    let quantity = match rng.random_range(0..10) {
        0..=5 => 1,
        6..=8 => 2,
        _ => rng.random_range(3..=5),
    };
    let unit_cents = rng.random_range(199..=49_999);
    OrderLine {
        order_line_id: format!("{order_id}-{line}"),
        offer_sku: shop_sku(rng, line),
        product_title: format!("{brand} {product}"),
        quantity,
        price: decimal(unit_cents),
        unit_cents,
        order_line_state: OrderState::WaitingAcceptance,
        shipped_quantity: 0,
    }
}
