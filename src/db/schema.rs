//! Portable table definitions, the same for SQLite and PostgreSQL.

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Nullable<Text>,
        secret_prefix -> Nullable<Text>,
        is_public -> Bool,
        redirect_uris -> Text,
        grant_types -> Text,
        scope -> Text,
        can_introspect -> Bool,
        token_endpoint_auth_method -> Text,
        application_type -> Text,
        registration_token_hash -> Nullable<Text>,
        metadata -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        password_hash -> Nullable<Text>,
        email_verified -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_key -> Binary,
        public_jwk -> Text,
        created_at -> BigInt,
        retired_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        event -> Text,
        created_at -> BigInt,
        actor -> Nullable<Text>,
        ip -> Nullable<Text>,
        registration_id -> Nullable<Text>,
        client_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        detail -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(clients, users, signing_keys, audit_events);
