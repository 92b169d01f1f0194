//! The configuration example in README.md is a working configuration.

#[test]
fn the_readme_configuration_example_parses_and_validates() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("```toml\n").expect("README has a TOML example") + "```toml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    // The example refers to its secrets as env: references; give them values.
    for name in [
        "BRIGHTPEARL_STAFF_TOKEN",
        "BRIGHTPEARL_WEBHOOK_SECRET",
        "SHOPIFY_MAIN_TOKEN",
        "SHOPIFY_MAIN_CLIENT_SECRET",
        "WOO_CK",
        "WOO_CS",
        "WOO_WEBHOOK_SECRET",
    ] {
        // SAFETY: nextest runs each test in its own process; nothing else reads the environment here.
        unsafe { std::env::set_var(name, "example-value") };
    }
    let mut config = pearlsync::config::Config::from_toml(example).unwrap();
    let env = |name: &str| match name {
        "ORDERS_QUEUE_URL" => Some("http://127.0.0.1:1/q/orders.fifo".to_string()),
        "STOCK_QUEUE_URL" => Some("http://127.0.0.1:1/q/stock".to_string()),
        "PURCHASING_QUEUE_URL" => Some("http://127.0.0.1:1/q/purchasing".to_string()),
        _ => None,
    };
    config.apply_env(&env).unwrap();
    config.validate().unwrap();
    assert_eq!(config.stores.len(), 2);
    assert_eq!(config.stores[0].warehouses, [2, 3]);
    assert_eq!(config.stores[0].webhook_secret.expose(), "example-value");
    assert!(!format!("{config:?}").contains("example-value"), "secrets must not appear in Debug output");
}
