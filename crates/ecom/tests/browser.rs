//! The storefront and the console in a real browser (headless Chromium
//! through chromedriver), driven by clicking and typing as a person would:
//! the whole journey from sign-up to delivery, an admin's new product in
//! the shop, refusals shown in words, a shopper kept out of the console.
//! Plus a check, without a browser, that no served page names another host.
//!
//! Without chromedriver the browser tests print a note and pass, except
//! under `CI=true` (`.ci/run` installs Chromium). They run one at a time:
//! each starts its own Chromium. `ECOM_SCREENSHOTS=DIR` saves screenshots
//! of the main pages at desktop and phone width into DIR
//! (`docs/screenshots/` holds the committed ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "webdriver/mod.rs"]
mod webdriver;

use common::{on_each_storage, Storage, TestApp, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;
use webdriver::Browser;

/// One Chromium at a time: the machine has two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A user in `groups`, made as `ecom users add` makes one: (email, id token).
async fn staff(app: &TestApp, groups: &[&str]) -> (String, String) {
    let email = format!(
        "{}-{}@staff.example",
        groups.join("-"),
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    ecom::cli::users::add(&app.storage_target(), &email, PASSWORD, &groups)
        .await
        .unwrap();
    let token = app.sign_in(&email).await;
    (email, token)
}

async fn product(app: &TestApp, admin: &str, name: &str, category: &str, price: i64) -> Value {
    let (status, body) = app
        .post_with_token(
            "/products/admin/products",
            admin,
            &json!({"name": name, "price": price, "category": category,
                    "package": {"width": 200, "length": 150, "height": 100, "weight": 400}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// The sample catalogue of the README (`data/catalogue.json`), through the admin route.
async fn sample_catalogue(app: &TestApp, admin: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/catalogue.json");
    let products: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for p in products {
        let (status, body) = app.post_with_token("/products/admin/products", admin, &p).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// Saves a screenshot as DIR/NAME.png when `ECOM_SCREENSHOTS=DIR` is set.
async fn screenshot(browser: &Browser, name: &str) {
    let Some(dir) = std::env::var_os("ECOM_SCREENSHOTS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The top of the page, without a focus ring; then let the live
    // region's announcement and the reflow settle.
    browser
        .exec(
            "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);",
            json!([]),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await).unwrap();
}

/// Screenshots at desktop (1280×800) and phone (390×844) size, then back.
async fn screenshots(browser: &Browser, name: &str) {
    if std::env::var_os("ECOM_SCREENSHOTS").is_none() {
        return;
    }
    browser.emulate(1280, 800, false).await;
    screenshot(browser, &format!("{name}-desktop")).await;
    browser.emulate(390, 844, true).await;
    screenshot(browser, &format!("{name}-phone")).await;
    browser.stop_emulating().await;
}

/// The page shows words, never a JSON body or a stack trace.
async fn no_raw_output(browser: &Browser) {
    let text = browser.text().await;
    for raw in [
        "{\"",
        "\"message\"",
        "at http",
        "TypeError",
        "undefined",
        "[object Object]",
    ] {
        assert!(!text.contains(raw), "the page shows {raw:?}:\n{text}");
    }
}

/// Every URL the page loaded is on the app's own origin.
async fn only_own_origin(browser: &Browser, app: &TestApp) {
    for url in browser.loaded_urls().await {
        assert!(
            url.starts_with(&format!("{}/", app.base)),
            "the page loaded {url}"
        );
    }
}

async fn sign_up_in_the_shop(browser: &Browser) -> String {
    let email = format!(
        "shopper-{}@example.com",
        &Uuid::new_v4().simple().to_string()[..8]
    );
    browser.fill("Email", &email).await;
    browser.fill("Password", PASSWORD).await;
    browser.fill("Repeat the password", PASSWORD).await;
    browser.button("Create the account").await;
    browser.wait_text(&format!("You are signed in as {email}.")).await;
    email
}

async fn sign_in_to_console(browser: &Browser, app: &TestApp, email: &str) {
    browser.goto(&app.url("/console")).await;
    browser.fill("Email", email).await;
    browser.fill("Password", PASSWORD).await;
    browser.button("Sign in").await;
    browser.wait_text(email).await;
}

async fn fill_address(browser: &Browser) {
    browser.fill("Full name", "Ada Lovelace").await;
    browser.fill("Street address", "Hauptstraße 1").await;
    browser.fill("Post code", "10115").await;
    browser.fill("City", "Berlin").await;
    browser.fill("Country code", "DE").await;
    browser.fill("Phone", "+49 30 1234").await;
}

/// The shopper's order id, read from the order page's address.
async fn order_id_on_page(browser: &Browser) -> String {
    let url = browser
        .exec("return location.hash;", json!([]))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    url.strip_prefix("#/o/").expect("on an order page").to_owned()
}

#[tokio::test]
async fn a_shopper_buys_by_clicking_and_watches_staff_pack_and_deliver_it() {
    let _one = ONE_BROWSER.lock().await;
    on_each_storage(|app| async move {
        let Some(browser) = Browser::start().await else {
            return;
        };
        let (_, admin) = staff(&app, &["admin"]).await;
        sample_catalogue(&app, &admin).await;
        product(&app, &admin, "Watering can", "garden", 1500).await;
        product(&app, &admin, "Trowel", "garden", 700).await;
        product(&app, &admin, "Teapot", "kitchen", 2500).await;
        let (packer, _) = staff(&app, &["warehouse"]).await;
        let (courier, _) = staff(&app, &["delivery"]).await;

        // The shop: a category, a product from the grid, another from its page.
        browser.goto(&app.url("/")).await;
        browser.find("//h1[normalize-space(.)='All products']").await;
        browser.wait_text("Page 1").await;
        browser.wait_text("toys").await;
        screenshots(&browser, "shop").await;
        browser.button("Next page").await;
        browser.wait_text("Page 2").await;
        browser.button("Previous page").await;
        browser.wait_text("Page 1").await;
        browser.link("garden").await;
        browser.find("//h1[normalize-space(.)='garden']").await;
        browser.wait_text("Watering can").await;
        assert!(
            !browser.text().await.contains("Teapot"),
            "only the garden category is listed"
        );
        browser.labelled("Add Watering can to cart").await;
        browser.wait_text("Added 1 × Watering can to the cart.").await;
        browser.link("Trowel").await;
        browser.find("//h1[normalize-space(.)='Trowel']").await;
        browser.fill("Quantity", "3").await;
        screenshots(&browser, "product").await;
        browser.labelled("Add Trowel to cart").await;
        browser.wait_text("Added 3 × Trowel to the cart.").await;
        browser.link("Cart (4)").await;
        browser.wait_text("€36.00").await;
        screenshots(&browser, "cart").await;

        // Checkout asks to sign up first, then comes back.
        browser.link("Check out").await;
        browser
            .wait_text("Sign in to check out; your cart is kept.")
            .await;
        browser.link("Create an account").await;
        sign_up_in_the_shop(&browser).await;
        browser.find("//h1[normalize-space(.)='Check out']").await;
        fill_address(&browser).await;
        browser.button("Get the delivery price").await;
        browser.wait_text("Total: €46.00").await;
        browser.fill("Card number", "4242 4242 4242 4242").await;
        screenshots(&browser, "checkout").await;
        browser.button("Pay €46.00 and place the order").await;

        // The order page, as placed.
        browser.wait_text("Status: Placed").await;
        browser.wait_text("€46.00").await;
        browser.wait_text("Cart (0)").await;
        let order_id = order_id_on_page(&browser).await;
        no_raw_output(&browser).await;
        only_own_origin(&browser, &app).await;
        let shopper_tab = browser.tab().await;

        // The warehouse, in another window: one Trowel fewer.
        browser.new_tab().await;
        sign_in_to_console(&browser, &app, &packer).await;
        browser
            .find("//h1[normalize-space(.)='Packaging requests']")
            .await;
        browser.wait_text(&order_id).await;
        screenshots(&browser, "console-packaging").await;
        browser
            .labelled(&format!("Open packaging request {}", &order_id[..8]))
            .await;
        browser.button("Start packaging").await;
        browser.wait_text("Status: In progress").await;
        browser.fill("Quantity of Trowel", "1").await;
        screenshots(&browser, "console-packing").await;
        browser.button("Complete packaging").await;
        browser.wait_text("Status: Completed").await;
        no_raw_output(&browser).await;

        // The shopper's page follows: packed, and 2 × €7.00 less.
        browser.switch_to(&shopper_tab).await;
        browser.wait_text("Status: Packed").await;
        browser.wait_text("€32.00").await;
        assert!(!browser.text().await.contains("€46.00"), "the total was lowered");
        screenshots(&browser, "order").await;

        // Delivery staff deliver it.
        let staff_tab = browser.new_tab().await;
        sign_in_to_console(&browser, &app, &courier).await;
        browser.find("//h1[normalize-space(.)='Deliveries']").await;
        let deadline = tokio::time::Instant::now() + webdriver::PATIENCE;
        while !browser.text().await.contains(&order_id[..8]) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the delivery never appeared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            browser.refresh().await;
        }
        browser
            .labelled(&format!("Open delivery {}", &order_id[..8]))
            .await;
        browser.wait_text("Ada Lovelace").await;
        browser.button("Start delivery").await;
        browser.wait_text("Status: In progress").await;
        browser.button("Complete delivery").await;
        browser.wait_text("Status: Completed").await;
        no_raw_output(&browser).await;
        only_own_origin(&browser, &app).await;
        let _ = staff_tab;

        browser.switch_to(&shopper_tab).await;
        browser.wait_text("Status: Delivered").await;
        browser.wait_text("€32.00").await;
        let text = browser
            .text()
            .await
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.contains("Placed (done) Packed (done) Delivered (done)"),
            "every step is done: {text}"
        );
        no_raw_output(&browser).await;

        // Order history lists it.
        browser.link("Orders").await;
        browser.find("//h1[normalize-space(.)='Your orders']").await;
        browser.wait_text("Delivered").await;
        browser.wait_text(&order_id[..8]).await;
        browser.quit().await;
    })
    .await;
}

#[tokio::test]
async fn a_product_an_admin_creates_in_the_console_appears_in_the_shop() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        let (admin, _) = staff(&app, &["admin"]).await;
        sign_in_to_console(&browser, &app, &admin).await;
        browser.link("Products").await;
        browser.find("//h1[normalize-space(.)='Products']").await;
        browser.link("New product").await;
        browser.find("//h1[normalize-space(.)='New product']").await;

        // The form checks before sending.
        browser.fill("Name", "Solar lantern").await;
        browser.fill("Price (€)", "24,5x").await;
        browser.button("Create the product").await;
        browser.wait_text("Enter a price like 12.50.").await;
        browser.wait_text("Width (mm) is required.").await;

        browser.fill("Category", "outdoor").await;
        browser.fill("Price (€)", "24.50").await;
        browser.fill("Width (mm)", "120").await;
        browser.fill("Length (mm)", "120").await;
        browser.fill("Height (mm)", "300").await;
        browser.fill("Weight (g)", "650").await;
        browser.fill("Tags", "light, solar").await;
        browser.button("Create the product").await;
        browser.wait_text("Created Solar lantern.").await;
        browser.find("//h1[normalize-space(.)='Products']").await;
        browser.wait_text("€24.50").await;
        screenshots(&browser, "console-products").await;
        no_raw_output(&browser).await;

        // What the form can check, it checks; the server's refusals are
        // shown in the server's words.
        browser.link("New product").await;
        browser.find("//h1[normalize-space(.)='New product']").await;
        browser.fill("Name", "Bad picture").await;
        browser.fill("Price (€)", "1").await;
        for dim in ["Width (mm)", "Length (mm)", "Height (mm)", "Weight (g)"] {
            browser.fill(dim, "1").await;
        }
        browser.fill("Picture addresses", "ftp://example.com/x.png").await;
        browser.button("Create the product").await;
        browser
            .wait_text("Each line must be one web address of a picture (http or https).")
            .await;
        browser.fill("Picture addresses", "").await;
        browser.fill("Tags", &"t".repeat(201)).await;
        browser.button("Create the product").await;
        browser.wait_text("must be at most 200 characters").await;
        no_raw_output(&browser).await;

        browser.new_tab().await;
        browser.goto(&app.url("/")).await;
        browser.link("outdoor").await;
        browser.wait_text("Solar lantern").await;
        browser.link("Solar lantern").await;
        browser.find("//h1[normalize-space(.)='Solar lantern']").await;
        browser.wait_text("€24.50").await;
        browser.wait_text("Tags: light, solar").await;
        no_raw_output(&browser).await;
        browser.quit().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn an_admin_manages_users_groups_and_products_in_the_console() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        let (admin_email, admin) = staff(&app, &["admin"]).await;
        sign_in_to_console(&browser, &app, &admin_email).await;

        // A new warehouse colleague.
        browser.link("Users").await;
        browser.find("//h1[normalize-space(.)='Users and groups']").await;
        let packer = format!("packer-{}@example.com", &Uuid::new_v4().simple().to_string()[..8]);
        browser.fill("Email", &packer).await;
        browser.fill("Password", "short").await;
        browser.button("Add the user").await;
        browser
            .wait_text("Use 8 or more characters with at least two of")
            .await;
        browser.fill("Password", PASSWORD).await;
        browser
            .click("//form[.//button[normalize-space(.)='Add the user']]//input[@id=//label[normalize-space(.)='warehouse']/@for]")
            .await;
        browser.button("Add the user").await;
        browser.wait_text(&format!("Added {packer}.")).await;
        let packer_token = app.sign_in(&packer).await;
        let (_, body) = app
            .post_with_token(
                "/graphql",
                &packer_token,
                &json!({"query": "{ getNewPackagingRequestIds { packagingRequestIds } }"}),
            )
            .await;
        assert!(body["errors"].is_null(), "the new user packs: {body}");

        // Taken out of the group again, from the user's row.
        browser.labelled(&format!("warehouse group for {packer}")).await;
        browser
            .wait_text(&format!("{packer} is no longer in the warehouse group."))
            .await;
        let (_, page) = app.get_with_token("/users/admin/users?limit=100", &admin).await;
        let row = page["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == packer.as_str())
            .unwrap()
            .clone();
        assert_eq!(row["groups"], json!([]));
        no_raw_output(&browser).await;

        // Products: an import file that creates one, updates one and has a bad one.
        let existing = product(&app, &admin, "Garden hose", "garden", 2900).await;
        let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        let mut changed = existing.clone();
        changed["price"] = json!(3100);
        let items = json!([
            changed,
            {"name": "Seed tray", "category": "garden", "price": 450,
             "package": {"width": 300, "length": 200, "height": 50, "weight": 150}},
            {"name": "No price", "package": {"width": 1, "length": 1, "height": 1, "weight": 1}},
        ]);
        std::fs::write(file.path(), items.to_string()).unwrap();
        browser.link("Products").await;
        browser.find("//h1[normalize-space(.)='Products']").await;
        browser
            .fill("JSON file", &file.path().display().to_string())
            .await;
        browser.button("Import").await;
        browser
            .wait_text("Created 1, updated 1, unchanged 0, refused 1.")
            .await;
        browser
            .wait_text("Product 3 (No price): missing field `price`")
            .await;
        no_raw_output(&browser).await;

        // Edit a price, then delete the product.
        browser.link("Products").await;
        browser.refresh().await;
        browser.labelled("Edit Seed tray").await;
        browser.find("//h1[normalize-space(.)='Edit Seed tray']").await;
        browser.fill("Price (€)", "5").await;
        browser.button("Save").await;
        browser.wait_text("Saved Seed tray.").await;
        browser.wait_text("€5.00").await;
        browser.wait_text("€31.00").await;
        browser
            .click("//tr[th[normalize-space(.)='Garden hose']]//button[normalize-space(.)='Delete']")
            .await;
        browser.button("Delete Garden hose").await;
        browser.wait_text("Deleted Garden hose.").await;
        let id = existing["productId"].as_str().unwrap();
        let (status, _) = app.get(&format!("/products/products/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        no_raw_output(&browser).await;
        browser.quit().await;
    }
    app.stop().await;
}

/// Puts the named products in a new shopper's cart and opens checkout,
/// signed in, with the address filled and priced.
async fn shopper_at_checkout(browser: &Browser, app: &TestApp, names: &[&str]) {
    browser.goto(&app.url("/")).await;
    for name in names {
        browser.labelled(&format!("Add {name} to cart")).await;
        browser.wait_text(&format!("Added 1 × {name} to the cart.")).await;
    }
    browser.goto(&app.url("/#/signup")).await;
    sign_up_in_the_shop(browser).await;
    browser.goto(&app.url("/#/checkout")).await;
    fill_address(browser).await;
    browser.button("Get the delivery price").await;
    browser.wait_text("Total:").await;
}

#[tokio::test]
async fn a_price_changed_after_adding_to_the_cart_is_explained_and_the_cart_updated() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        let (_, admin) = staff(&app, &["admin"]).await;
        let lamp = product(&app, &admin, "Desk lamp", "office", 3000).await;
        shopper_at_checkout(&browser, &app, &["Desk lamp"]).await;
        browser.wait_text("Total: €40.00").await;

        // The catalogue changes under the shopper's cart.
        let id = lamp["productId"].as_str().unwrap();
        let mut changed = lamp.clone();
        changed["price"] = json!(3500);
        let (status, body) = app
            .put_with_token(&format!("/products/admin/products/{id}"), &admin, &changed)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        browser.fill("Card number", "4242424242424242").await;
        browser.button("Pay €40.00 and place the order").await;
        browser.wait_text("The order was not placed:").await;
        browser
            .wait_text("Invalid value for 'price': want '3500', got '3000'")
            .await;
        browser.wait_text("(Desk lamp)").await;
        browser
            .wait_text("Your cart now shows the current catalogue.")
            .await;
        no_raw_output(&browser).await;

        // The shopper asks for the price again and pays the new total.
        browser.button("Get the delivery price").await;
        browser.wait_text("Total: €45.00").await;
        browser.button("Pay €45.00 and place the order").await;
        browser.wait_text("Status: Placed").await;
        browser.quit().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn an_ended_session_asks_to_sign_in_again_and_keeps_the_cart() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        let (_, admin) = staff(&app, &["admin"]).await;
        product(&app, &admin, "Notebook", "office", 400).await;
        shopper_at_checkout(&browser, &app, &["Notebook"]).await;
        let email = browser.exec("return JSON.parse(atob(sessionStorage.getItem('ecom.idToken').split('.')[1].replace(/-/g,'+').replace(/_/g,'/'))).email;", json!([])).await;
        let email = email.as_str().unwrap().to_owned();

        // Both tokens stop working (as when the account's session is revoked).
        browser
            .exec(
                "sessionStorage.setItem('ecom.idToken', 'x.eyJlbWFpbCI6InhAeC54In0.x'); sessionStorage.setItem('ecom.refreshToken', 'revoked');",
                json!([]),
            )
            .await;
        browser.fill("Card number", "4242424242424242").await;
        browser.fill("City", "Hamburg").await;
        browser.button("Get the delivery price").await;
        browser
            .wait_text("Your session has ended: please sign in again. Your cart is kept.")
            .await;
        browser.link("Sign in again").await;
        browser.fill("Email", &email).await;
        browser.fill("Password", PASSWORD).await;
        browser.button("Sign in").await;
        browser.find("//h1[normalize-space(.)='Check out']").await;
        browser.wait_text("Notebook").await;
        browser.wait_text("Cart (1)").await;
        no_raw_output(&browser).await;
        browser.quit().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_declined_card_is_explained_and_nothing_is_ordered() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        let (_, admin) = staff(&app, &["admin"]).await;
        product(&app, &admin, "Umbrella", "outdoor", 1900).await;
        shopper_at_checkout(&browser, &app, &["Umbrella"]).await;
        browser.fill("Card number", "4000 0000 0000 0002").await;
        browser.button("Pay €29.00 and place the order").await;
        browser
            .wait_text("The card was not accepted: card declined")
            .await;
        screenshots(&browser, "declined").await;
        browser.fill("Card number", "4000000000009995").await;
        browser.button("Pay €29.00 and place the order").await;
        browser.wait_text("insufficient funds").await;
        browser.wait_text("Cart (1)").await;
        no_raw_output(&browser).await;
        browser.link("Orders").await;
        browser.wait_text("No orders yet.").await;
        browser.quit().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_card_number_that_is_not_16_digits_is_refused_before_sending() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        let (_, admin) = staff(&app, &["admin"]).await;
        product(&app, &admin, "Candle", "home", 900).await;
        shopper_at_checkout(&browser, &app, &["Candle"]).await;
        browser.fill("Card number", "4242 4242").await;
        browser.button("Pay €19.00 and place the order").await;
        browser.wait_text("Enter the 16 digits of the card.").await;
        // A changed address needs a new delivery price before paying.
        browser.fill("Country code", "D").await;
        browser.button("Get the delivery price").await;
        browser
            .wait_text("Enter the two-letter country code, e.g. DE.")
            .await;
        browser.wait_text("Cart (1)").await;
        browser.quit().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_shopper_who_opens_the_console_sees_no_staff_data() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        // Someone else's order waits for packing: staff data a shopper must not see.
        let (admin_email, admin) = staff(&app, &["admin"]).await;
        let teapot = product(&app, &admin, "Teapot", "kitchen", 2500).await;
        let other = app.user_token(&[]).await;
        let address = json!({"name": "Grace Hopper", "streetAddress": "1 Navy Way", "city": "Arlington",
                             "country": "US", "phoneNumber": "+1 555 0100"});
        let mut line = teapot.clone();
        line["quantity"] = json!(1);
        let token = app.preauth(2500 + 1500).await;
        let (status, body) = app
            .post_with_token(
                "/graphql",
                &other,
                &json!({"query": "mutation ($o: CreateOrderRequest!) { createOrder(order: $o) { success order { orderId } } }",
                        "variables": {"o": {"products": [{"productId": line["productId"], "name": "Teapot", "price": 2500,
                            "package": line["package"], "quantity": 1}], "address": address, "deliveryPrice": 1500, "paymentToken": token}}}),
            )
            .await;
        assert_eq!(
            (status, &body["data"]["createOrder"]["success"]),
            (StatusCode::OK, &json!(true)),
            "{body}"
        );
        let order_id = body["data"]["createOrder"]["order"]["orderId"]
            .as_str()
            .unwrap()
            .to_owned();

        browser.goto(&app.url("/#/signup")).await;
        let email = sign_up_in_the_shop(&browser).await;
        browser.link("Staff console").await;
        browser.find("//h1[normalize-space(.)='No staff access']").await;
        browser
            .wait_text(&format!(
                "You are signed in as {email}, which is not a staff account."
            ))
            .await;
        browser.wait_text("The server refused:").await;
        screenshots(&browser, "console-refused").await;
        for hash in ["#/packaging", "#/deliveries", "#/users", "#/products", "#/bus"] {
            browser.goto(&app.url(&format!("/console{hash}"))).await;
            browser.wait_text("Your account may not see this.").await;
            let text = browser.text().await;
            for secret in [
                order_id.as_str(),
                &order_id[..8],
                "Grace Hopper",
                "Arlington",
                &admin_email,
            ] {
                assert!(!text.contains(secret), "{hash} shows {secret}:\n{text}");
            }
        }
        no_raw_output(&browser).await;
        browser.quit().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn the_category_menu_lists_every_category_with_its_number_of_products() {
    on_each_storage(|app| async move {
        let query = json!({"query": "{ categories { name count } }"});
        let (status, body) = app.post("/graphql", &query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["categories"], json!([]), "an empty catalogue");
        let (_, admin) = staff(&app, &["admin"]).await;
        for i in 0..3 {
            product(&app, &admin, &format!("Trowel {i}"), "garden", 700).await;
        }
        product(&app, &admin, "Teapot", "kitchen", 2500).await;
        let (status, body) = app
            .post_with_token(
                "/products/admin/products",
                &admin,
                &json!({"name": "Mystery", "price": 100,
                        "package": {"width": 1, "length": 1, "height": 1, "weight": 1}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, body) = app.post("/graphql", &query).await;
        assert_eq!(
            body["data"]["categories"],
            json!([{"name": "garden", "count": 3}, {"name": "kitchen", "count": 1}]),
            "by name, products without a category left out: {body}"
        );
    })
    .await;
}

/// POSTs to `/graphql` the current page has made so far.
async fn graphql_fetches(browser: &Browser) -> usize {
    browser
        .exec(
            "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/graphql')).length;",
            json!([]),
        )
        .await
        .as_u64()
        .unwrap() as usize
}

#[tokio::test]
async fn the_order_page_follows_the_order_through_the_subscription_without_polling() {
    let _one = ONE_BROWSER.lock().await;
    on_each_storage(|app| async move {
        let Some(browser) = Browser::start().await else {
            return;
        };
        let (_, admin) = staff(&app, &["admin"]).await;
        let kettle = product(&app, &admin, "Kettle", "kitchen", 2500).await;
        browser.goto(&app.url("/#/signup")).await;
        sign_up_in_the_shop(&browser).await;
        // The order is placed with the tab's own session, as checkout would.
        let token = browser
            .exec("return sessionStorage.getItem('ecom.idToken');", json!([]))
            .await
            .as_str()
            .unwrap()
            .to_owned();
        let payment = app.preauth(2 * 2500 + 1000).await;
        let address = json!({"name": "Ada Lovelace", "streetAddress": "1 Main St", "city": "Berlin",
                             "country": "DE", "phoneNumber": "+49 30 1"});
        let (status, body) = app
            .post_with_token(
                "/graphql",
                &token,
                &json!({"query": "mutation ($o: CreateOrderRequest!) { createOrder(order: $o) { success order { orderId } } }",
                        "variables": {"o": {"products": [{"productId": kettle["productId"], "name": "Kettle", "price": 2500,
                            "package": kettle["package"], "quantity": 2}], "address": address, "deliveryPrice": 1000,
                            "paymentToken": payment}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let order_id = body["data"]["createOrder"]["order"]["orderId"]
            .as_str()
            .unwrap_or_else(|| panic!("no order: {body}"))
            .to_owned();

        browser.goto(&app.url(&format!("/#/o/{order_id}"))).await;
        browser.wait_text("Status: Placed").await;
        browser
            .wait_text("This page updates live as the order moves.")
            .await;
        let fetched = graphql_fetches(&browser).await;

        // The warehouse packs one kettle instead of two.
        let order = json!({"orderId": order_id});
        app.eventually("the packaging request", || async {
            let path = format!("/warehouse/packaging-requests/{order_id}");
            app.get_with_token(&path, &admin).await.0 == StatusCode::OK
        })
        .await;
        for (path, body) in [
            ("/warehouse/startPackaging", order.clone()),
            (
                "/warehouse/updatePackagingProduct",
                json!({"orderId": order_id, "productId": kettle["productId"], "quantity": 1}),
            ),
            ("/warehouse/completePackaging", order.clone()),
        ] {
            let (status, answer) = app.post_with_token(path, &admin, &body).await;
            assert!(status.is_success(), "{path}: {status} {answer}");
        }
        browser.wait_text("Status: Packed").await;
        browser.wait_text("€35.00").await;
        // The change came over the socket: the page asked nothing more.
        assert_eq!(
            graphql_fetches(&browser).await,
            fetched,
            "the page polled instead of listening"
        );
        assert!(browser.text().await.contains("This page updates live"));
        no_raw_output(&browser).await;
        browser.quit().await;
    })
    .await;
}

/// The rule that lowers a held payment when an order's total changes.
const TOTAL_RULE: &str = "payment.on-order-total-modified";

fn order_image(order_id: Uuid, token: &str, total: i64) -> Value {
    common::order_json(
        order_id,
        json!({"paymentToken": token, "total": total, "modifiedDate": ecom_model::Timestamp::now()}),
    )
}

#[tokio::test]
async fn an_admin_sees_a_dead_letter_in_the_console_redrives_it_and_watches_events_pass() {
    let _one = ONE_BROWSER.lock().await;
    // One attempt: a failed delivery is a dead letter at once.
    common::on_each_storage_configured(
        |c| c.bus.max_attempts = 1,
        |app| async move {
            let Some(browser) = Browser::start().await else {
                return;
            };
            let (admin_email, _) = staff(&app, &["admin"]).await;
            // A total change that arrives before payment knows the order.
            let order_id = Uuid::now_v7();
            let token = app.preauth(5000).await;
            let modified = ecom_platform::Event::new(
                "ecommerce.orders",
                "OrderModified",
                vec![order_id.to_string()],
                json!({"old": order_image(order_id, &token, 5000), "new": order_image(order_id, &token, 3000),
                       "changed": ["total"]}),
            );
            app.publish(std::slice::from_ref(&modified)).await;
            app.eventually("the dead letter", || async {
                !app.bus.dead_letters(Some(TOTAL_RULE)).await.unwrap().is_empty()
            })
            .await;

            sign_in_to_console(&browser, &app, &admin_email).await;
            browser.link("Event bus").await;
            browser.find("//h1[normalize-space(.)='Event bus']").await;
            browser.wait_text("no payment known yet").await;
            browser.wait_text(&modified.id.to_string()[..8]).await;
            screenshots(&browser, "console-bus").await;
            no_raw_output_outside_details(&browser).await;

            // Payment hears of the order; the admin redrives the rule's dead letter.
            let created = ecom_platform::Event::new(
                "ecommerce.orders",
                "OrderCreated",
                vec![order_id.to_string()],
                order_image(order_id, &token, 5000),
            );
            app.publish(std::slice::from_ref(&created)).await;
            app.handled("payment", "payment.on-order-created", &created).await;
            browser
                .labelled(&format!("Redrive the dead letters of {TOTAL_RULE}"))
                .await;
            browser
                .wait_text(&format!("Redrove 1 dead letter of {TOTAL_RULE}."))
                .await;
            app.handled("payment", TOTAL_RULE, &modified).await;
            assert_eq!(app.processor_status(&token).await["authorisedAmount"], 3000);
            browser.wait_text("No dead letters of every rule.").await;

            // The live tail shows an event published after it starts.
            browser.button("Start watching").await;
            browser.wait_text("Watching every source.").await;
            let event = ecom_platform::Event::new(
                "ecommerce.delivery",
                "DeliveryCompleted",
                vec![order_id.to_string()],
                json!({"orderId": order_id}),
            );
            app.publish(std::slice::from_ref(&event)).await;
            browser.wait_text("ecommerce.delivery DeliveryCompleted").await;
            browser.button("Stop watching").await;
            browser.wait_text("Stopped.").await;
            only_own_origin(&browser, &app).await;
            browser.quit().await;
        },
    )
    .await;
}

/// [`no_raw_output`] for a page that shows event bodies as JSON on purpose,
/// inside closed `<details>`: the rest of the page shows words.
async fn no_raw_output_outside_details(browser: &Browser) {
    let text = browser
        .exec(
            "const c = document.body.cloneNode(true); c.querySelectorAll('pre.json, code.pattern').forEach(e => e.remove()); return c.innerText;",
            json!([]),
        )
        .await;
    let text = text.as_str().unwrap();
    for raw in [
        "\"message\"",
        "at http",
        "TypeError",
        "undefined",
        "[object Object]",
    ] {
        assert!(!text.contains(raw), "the page shows {raw:?}:\n{text}");
    }
}

/// The SVG namespace is a name, never fetched; the one absolute URL allowed.
const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";

#[tokio::test]
async fn no_served_page_or_asset_names_another_origin() {
    let app = TestApp::spawn(Storage::Sqlite).await;
    let mut urls = vec![app.url("/"), app.url("/console")];
    let version = ecom_web::asset_version();
    for name in ecom_web::asset_names() {
        urls.push(app.url(&format!("/assets/{version}/{name}")));
    }
    for url in &urls {
        let resp = app.http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'self'"), "{url}: {csp}");
        let text = resp.text().await.unwrap().replace(SVG_NAMESPACE, "");
        for (i, _) in text.match_indices("://") {
            let start = text[..i]
                .rfind(|c: char| !c.is_ascii_alphanumeric())
                .map_or(0, |p| p + 1);
            let scheme = &text[start..i];
            if scheme == "http" || scheme == "https" {
                let rest = &text[i + 3..];
                assert!(
                    format!("{scheme}://{rest}").starts_with(&format!("{}/", app.base)),
                    "{url} names {scheme}://{}",
                    &rest[..rest.len().min(40)]
                );
            }
        }
        // Every asset a page names is one the server has.
        for (i, _) in text.match_indices("/assets/") {
            let path: String = text[i..].chars().take_while(|c| !"\"' )".contains(*c)).collect();
            let (status, _) = app.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{url} names {path}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_graphql_ide_runs_a_typed_query_with_no_network() {
    let _one = ONE_BROWSER.lock().await;
    let app = TestApp::spawn(Storage::Sqlite).await;
    if let Some(browser) = Browser::start().await {
        let (_, admin) = staff(&app, &["admin"]).await;
        product(&app, &admin, "Enamel mug", "kitchen", 1200).await;
        browser.resize(1280, 800).await;
        browser.goto(&app.url("/graphql")).await;
        // Put the cursor in the query editor (the first CodeMirror) as a
        // click would, select all, and type a query over it.
        browser.wait_text("Welcome to ecom").await;
        browser
            .exec(
                "document.querySelector('.CodeMirror').CodeMirror.focus(); return true;",
                serde_json::json!([]),
            )
            .await;
        browser.keys("\u{E009}a\u{E003}").await;
        browser.keys("{ getProducts { products { name price").await;
        browser
            .click("//button[contains(@aria-label,'Execute query')]")
            .await;
        browser.wait_text("Enamel mug").await;
        browser.wait_text("1200").await;
        let urls = browser.loaded_urls().await;
        assert!(
            urls.iter().all(|u| u.starts_with(&app.base)),
            "the IDE loaded from elsewhere: {urls:?}"
        );
        // Kept for CI's log (`.ci/run` lists it) and for a person to look at.
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphiql.png");
        std::fs::write(&path, browser.screenshot().await).unwrap();
        eprintln!("GraphiQL screenshot: {}", path.display());
        screenshot(&browser, "graphiql-desktop").await;
        browser.quit().await;
    }
    app.stop().await;
}
