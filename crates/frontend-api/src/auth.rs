//! Who is calling: the bearer token of the request, verified on first use.
//!
//! Public product queries never look at the token, so they cost nothing
//! extra; every other operation asks for [`user`] or [`staff`], which
//! verify the token once per request with the users service's keys.

use crate::error::{self, error};
use async_graphql::Context;
use axum::http::{header, HeaderMap};
use ecom_contracts::Group;
use ecom_runtime::auth::Claims;
use tokio::sync::OnceCell;

/// The caller of one GraphQL request.
pub struct Caller {
    token: Option<String>,
    verified: OnceCell<Result<Claims, async_graphql::Error>>,
}

/// A verified user and the token that proved it (passed on to staff routes
/// of the services, which check the user's groups themselves).
pub struct User<'a> {
    /// The token's claims.
    pub claims: &'a Claims,
    /// The token as sent.
    pub token: &'a str,
}

impl Caller {
    /// The caller of a request with these headers: `Authorization: Bearer
    /// <token>`, or the bare token as the original gateway accepted.
    pub fn from_headers(headers: &HeaderMap) -> Caller {
        Caller::from_authorization(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
    }

    /// The caller presenting this `Authorization` value: `Bearer <token>`
    /// or the bare token; none when absent or blank.
    pub fn from_authorization(value: Option<&str>) -> Caller {
        let token = value
            .map(|v| match v.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ => v.trim(),
            })
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Caller {
            token,
            verified: OnceCell::new(),
        }
    }

    /// The token presented, if any (not verified).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// The signed-in user; `UNAUTHENTICATED` without a valid token.
pub async fn user<'a>(ctx: &Context<'a>) -> async_graphql::Result<User<'a>> {
    let caller = ctx
        .data::<Caller>()
        .map_err(|_| error::internal("the request carries no caller"))?;
    let Some(token) = caller.token.as_deref() else {
        return Err(error(
            error::UNAUTHENTICATED,
            "this operation needs a signed-in user: send 'Authorization: Bearer <idToken>'",
        ));
    };
    let verifier = &crate::gateway(ctx)?.verifier;
    let verified = caller
        .verified
        .get_or_init(|| async { verifier.verify(token).await.map_err(error::from_api) })
        .await;
    match verified {
        Ok(claims) => Ok(User { claims, token }),
        Err(e) => Err(e.clone()),
    }
}

/// A signed-in user in one of `groups`; `FORBIDDEN` for other users.
pub async fn staff<'a>(ctx: &Context<'a>, groups: &[Group]) -> async_graphql::Result<User<'a>> {
    let user = user(ctx).await?;
    user.claims.require_group(groups).map_err(error::from_api)?;
    Ok(user)
}
