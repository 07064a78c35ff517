//! frontend-api
