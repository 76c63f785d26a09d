use metrix_proto::auth::v1::{GetCurrentUserRequest, Role, SignInRequest, SignUpRequest};
use tonic::Code;

use crate::helpers::{Backend, PASSWORD, assert_code, authorized, spawn_app, unique_email, violated_fields};
use metrix_core::both_backends;

async fn sign_up_creates_an_organisation_whose_first_user_is_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    let signed_up = app.sign_up(&email.to_uppercase()).await;
    let user = signed_up.user.expect("user");
    assert_eq!(user.email, email, "emails are stored lower-cased");
    assert_eq!(user.role(), Role::Admin);
    assert_eq!(user.sign_in_methods, ["password"]);

    let signed_in = app
        .client
        .clone()
        .sign_in(SignInRequest {
            email: email.clone(),
            password: PASSWORD.into(),
        })
        .await
        .expect("sign-in succeeds")
        .into_inner();
    let tokens = signed_in.tokens.expect("tokens");
    assert_eq!(tokens.token_type, "Bearer");
    assert!(tokens.refresh_token.starts_with("mxr_"));

    let current = app
        .client
        .clone()
        .get_current_user(authorized(GetCurrentUserRequest {}, &tokens.access_token))
        .await
        .expect("me")
        .into_inner();
    assert_eq!(current.user.expect("user").user_id, user.user_id);
    let organization = current.organization.expect("organization");
    assert_eq!(organization.display_name, "Acme Analytics");
    assert_eq!(organization.organization_id, user.organization_id);
}

async fn sign_up_names_every_bad_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = assert_code(
        app.client
            .clone()
            .sign_up(SignUpRequest {
                email: "not an email".into(),
                password: "short".into(),
                organization_name: " ".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["email", "password", "organization_name"]);
}

async fn sign_up_with_a_malformed_email_names_the_email_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = assert_code(
        app.client
            .clone()
            .sign_up(SignUpRequest {
                email: "ada@".into(),
                password: PASSWORD.into(),
                organization_name: "Ada".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["email"]);
}

async fn a_taken_email_cannot_sign_up_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    app.sign_up(&email).await;
    assert_code(
        app.client
            .clone()
            .sign_up(SignUpRequest {
                email,
                password: PASSWORD.into(),
                organization_name: "Other".into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
    );
}

async fn a_wrong_password_and_an_unknown_email_get_the_same_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let email = unique_email();
    app.sign_up(&email).await;
    let wrong_password = assert_code(
        app.client
            .clone()
            .sign_in(SignInRequest {
                email,
                password: "not the password".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    let unknown_email = assert_code(
        app.client
            .clone()
            .sign_in(SignInRequest {
                email: unique_email(),
                password: "not the password".into(),
            })
            .await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong_password.message(), unknown_email.message());
}

both_backends!(
    sign_up_creates_an_organisation_whose_first_user_is_admin,
    sign_up_names_every_bad_field,
    sign_up_with_a_malformed_email_names_the_email_field,
    a_taken_email_cannot_sign_up_again,
    a_wrong_password_and_an_unknown_email_get_the_same_answer,
);
