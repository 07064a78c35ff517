//! The services of the shop: their names (in configuration, URL prefixes
//! and service credentials) and the event sources they publish under.

use serde::{Deserialize, Serialize};

/// The event sources of the platform (`source` of the envelope).
pub mod sources {
    /// Users service.
    pub const USERS: &str = "ecommerce.users";
    /// Products service.
    pub const PRODUCTS: &str = "ecommerce.products";
    /// Orders service.
    pub const ORDERS: &str = "ecommerce.orders";
    /// Warehouse service.
    pub const WAREHOUSE: &str = "ecommerce.warehouse";
    /// Delivery service.
    pub const DELIVERY: &str = "ecommerce.delivery";
    /// Payment service.
    pub const PAYMENT: &str = "ecommerce.payment";
}

/// A service of the shop, as named in configuration (`[services]`), in the
/// path prefix of its routes and in the `sub` of its service credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// Accounts, sign-in, staff groups.
    Users,
    /// The catalogue.
    Products,
    /// Orders and their life.
    Orders,
    /// Stock and packaging.
    Warehouse,
    /// Deliveries.
    Delivery,
    /// Delivery prices.
    DeliveryPricing,
    /// Payments, through the card processor.
    Payment,
    /// The card processor (a stand-in for a third party).
    #[serde(rename = "payment-3p")]
    Payment3p,
    /// The GraphQL gateway.
    FrontendApi,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 9] = [
        Service::Users,
        Service::Products,
        Service::Orders,
        Service::Warehouse,
        Service::Delivery,
        Service::DeliveryPricing,
        Service::Payment,
        Service::Payment3p,
        Service::FrontendApi,
    ];

    /// The name in configuration, routes and credentials (`delivery-pricing`).
    pub const fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Products => "products",
            Service::Orders => "orders",
            Service::Warehouse => "warehouse",
            Service::Delivery => "delivery",
            Service::DeliveryPricing => "delivery-pricing",
            Service::Payment => "payment",
            Service::Payment3p => "payment-3p",
            Service::FrontendApi => "frontend-api",
        }
    }

    /// The source its events carry, for the services that emit any.
    pub const fn source(self) -> Option<&'static str> {
        match self {
            Service::Users => Some(sources::USERS),
            Service::Products => Some(sources::PRODUCTS),
            Service::Orders => Some(sources::ORDERS),
            Service::Warehouse => Some(sources::WAREHOUSE),
            Service::Delivery => Some(sources::DELIVERY),
            Service::Payment => Some(sources::PAYMENT),
            Service::DeliveryPricing | Service::Payment3p | Service::FrontendApi => None,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|service| service.name() == s)
            .ok_or_else(|| format!("unknown service '{s}'"))
    }
}
