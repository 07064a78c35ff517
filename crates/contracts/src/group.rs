//! The staff groups a user may belong to (`groups` of an ID token), and
//! which of them may do what.

use serde::{Deserialize, Serialize};

/// A staff group. On the wire (tokens, the users API, the database) it is
/// its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Group {
    /// Everything, including user administration.
    Admin,
    /// Packaging requests and stock.
    Warehouse,
    /// Deliveries.
    Delivery,
}

impl Group {
    /// Every group.
    pub const ALL: [Group; 3] = [Group::Admin, Group::Warehouse, Group::Delivery];

    // Who may do what. A service and the gateway in front of it check the
    // same set, so each is named once here; a refusal lists the set in
    // this order ("needs one of the groups: admin, warehouse").

    /// User administration, the catalogue, the bus (rules, dead letters,
    /// listener), cancelling any order, refunds, deleting deliveries.
    pub const ADMINS: &'static [Group] = &[Group::Admin];
    /// Packaging requests and stock: the warehouse's staff routes and the
    /// gateway's fields over them.
    pub const WAREHOUSE_STAFF: &'static [Group] = &[Group::Admin, Group::Warehouse];
    /// Listing and reading deliveries.
    pub const DELIVERY_STAFF: &'static [Group] = &[Group::Admin, Group::Delivery];
    /// Starting, completing and failing deliveries: the original also let
    /// warehouse staff do so.
    pub const DRIVERS: &'static [Group] = &[Group::Admin, Group::Delivery, Group::Warehouse];
    /// Any staff member: may follow any order (`orderUpdated`).
    pub const STAFF: &'static [Group] = &Group::ALL;

    /// Stored and token text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Group::Admin => "admin",
            Group::Warehouse => "warehouse",
            Group::Delivery => "delivery",
        }
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Group {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Group::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| format!("unknown group '{s}': the groups are admin, warehouse, delivery"))
    }
}

impl TryFrom<String> for Group {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Group> for String {
    fn from(group: Group) -> String {
        group.as_str().to_owned()
    }
}
