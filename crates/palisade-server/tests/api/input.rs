//! Malformed input on every route that takes a body (POST /v1/tenants, POST /v1/users,
//! PATCH /v1/users/{id}), sent by the system admin so authorization never stands in the way: each case
//! is refused with a 4xx problem naming what was wrong (never the value), and nothing is written.

use palisade_authz::{InternalRole, SystemScope};
use palisade_store::{NewUser, PageRequest, Tenant, User};
use palisade_testkit::{Actor, TestApp, each_backend};
use reqwest::Method;

use crate::expect_problem;

/// A value that must never come back in a response.
const MARKER: &str = "secret-marker-123";

#[derive(Debug, Clone, Copy)]
enum Route {
    CreateTenant,
    CreateUser,
    PatchUser,
}

const ROUTES: [Route; 3] = [Route::CreateTenant, Route::CreateUser, Route::PatchUser];

impl Route {
    /// A body the route would accept, so a refusal is due to the malformation alone.
    fn valid_body(self) -> &'static str {
        match self {
            Self::CreateTenant => r#"{"name":"Input Probe","slug":"input-probe"}"#,
            Self::CreateUser => r#"{"email":"probe@input.test","roles":["member"]}"#,
            Self::PatchUser => r#"{"status":"disabled","roles":["viewer"]}"#,
        }
    }

    /// The valid body's fields, as raw JSON.
    fn valid_fields(self) -> [(&'static str, &'static str); 2] {
        match self {
            Self::CreateTenant => [("name", r#""Input Probe""#), ("slug", r#""input-probe""#)],
            Self::CreateUser => [
                ("email", r#""probe@input.test""#),
                ("roles", r#"["member"]"#),
            ],
            Self::PatchUser => [("status", r#""disabled""#), ("roles", r#"["viewer"]"#)],
        }
    }

    /// The valid body with `field` set to `raw` (replaced in place, or appended when it is not one of
    /// the valid body's fields), so the only fault is that value.
    fn with(self, field: &str, raw: &str) -> Vec<u8> {
        let mut fields: Vec<(&str, &str)> = self.valid_fields().to_vec();
        match fields.iter_mut().find(|(k, _)| *k == field) {
            Some(slot) => slot.1 = raw,
            None => fields.push((field, raw)),
        }
        let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", inner.join(",")).into_bytes()
    }
}

/// One malformed request and the refusal it must get.
struct Case {
    label: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<String>,
    field_code: Option<&'static str>,
    detail: Option<String>,
    /// A second acceptable refusal, where the contract only asks for "a 4xx problem".
    or: Option<(u16, &'static str)>,
}

fn case(
    label: impl Into<String>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        label: label.into(),
        content_type: Some("application/json"),
        body: body.into(),
        status,
        code,
        field: None,
        field_code: None,
        detail: None,
        or: None,
    }
}

/// A 400 `request.malformed_json`.
fn malformed(label: impl Into<String>, body: impl Into<Vec<u8>>) -> Case {
    case(label, body, 400, "request.malformed_json")
}

/// A 422 `validation.failed` whose first error is `field` with `code`.
fn invalid(
    label: impl Into<String>,
    body: impl Into<Vec<u8>>,
    field: &str,
    code: &'static str,
) -> Case {
    Case {
        field: Some(field.to_owned()),
        field_code: Some(code),
        ..case(label, body, 422, "validation.failed")
    }
}

impl Case {
    fn content_type(self, ct: Option<&'static str>) -> Self {
        Self {
            content_type: ct,
            ..self
        }
    }
}

/// The system admin, a user to patch, and the path that patches it.
struct Setup {
    admin: Actor,
    patch_path: String,
}

async fn setup(app: &TestApp) -> Setup {
    let scope =
        SystemScope::internal(InternalRole::Bootstrap).tenant_scope(app.system_tenant().to_ref());
    let target = app
        .state
        .stores()
        .users
        .create_user(
            &scope,
            NewUser {
                email: "target@input.test".to_owned(),
                phone: None,
                roles: vec!["member".to_owned()],
            },
            &palisade_store::AuditMeta::system("test"),
        )
        .await
        .unwrap();
    Setup {
        admin: app.system_admin().await,
        patch_path: format!("/v1/users/{}", target.id),
    }
}

/// Everything a refused request could have changed: every tenant and every user of every tenant.
async fn everything(app: &TestApp) -> (Vec<Tenant>, Vec<User>) {
    let page = PageRequest {
        limit: 200,
        after: None,
    };
    let system = SystemScope::internal(InternalRole::Bootstrap);
    let stores = app.state.stores();
    let tenants = stores
        .tenants
        .list_tenants(&system.tenant_scope(app.system_tenant().to_ref()), &page)
        .await
        .unwrap()
        .items;
    let mut users = Vec::new();
    for t in &tenants {
        users.extend(
            stores
                .users
                .list_users(&system.tenant_scope(t.to_ref()), &page)
                .await
                .unwrap()
                .items,
        );
    }
    (tenants, users)
}

/// Sends each case to `route` and asserts its refusal, that no response is a 5xx, that no response
/// echoes [`MARKER`], and that nothing changed.
async fn refuse_all(app: &TestApp, s: &Setup, route: Route, cases: Vec<Case>) {
    let (method, path) = match route {
        Route::CreateTenant => (Method::POST, "/v1/tenants".to_owned()),
        Route::CreateUser => (Method::POST, "/v1/users".to_owned()),
        Route::PatchUser => (Method::PATCH, s.patch_path.clone()),
    };
    let before = everything(app).await;
    for c in cases {
        let what = format!("{} on {method} {route:?}", c.label);
        // Act
        let mut rb = s.admin.request(method.clone(), &path);
        if let Some(ct) = c.content_type {
            rb = rb.header("content-type", ct);
        }
        let res = rb.body(c.body).send().await.unwrap();
        // Assert
        let status = res.status().as_u16();
        assert!(status < 500, "{what}: {status}");
        let (expected_status, expected_code) = match c.or {
            Some((alt_status, alt_code)) if alt_status == status => (alt_status, alt_code),
            _ => (c.status, c.code),
        };
        if status != expected_status {
            panic!(
                "{what}: expected {}, got {status}: {}",
                c.status,
                res.text().await.unwrap()
            );
        }
        let headers = format!("{:?}", res.headers()).to_lowercase();
        assert!(
            !headers.contains(MARKER),
            "{what}: headers echo the value: {headers}"
        );
        let body = expect_problem(res, expected_status, expected_code).await;
        assert!(
            !body.to_string().to_lowercase().contains(MARKER),
            "{what}: body echoes the value: {body}"
        );
        if expected_status == 422 {
            if let Some(field) = &c.field {
                assert_eq!(body["errors"][0]["field"], field.as_str(), "{what}: {body}");
            }
            if let Some(code) = c.field_code {
                assert_eq!(body["errors"][0]["code"], code, "{what}: {body}");
            }
        }
        if let Some(detail) = &c.detail {
            assert_eq!(body["detail"], detail.as_str(), "{what}");
        }
        assert_eq!(
            everything(app).await,
            before,
            "{what}: the refused request changed something"
        );
    }
}

/// The name of a string field of the route, for cases that need one.
fn string_field(route: Route) -> &'static str {
    match route {
        Route::CreateTenant => "name",
        Route::CreateUser => "email",
        Route::PatchUser => "status",
    }
}

async fn malformed_or_non_object_json_is_refused_and_nothing_is_written(app: TestApp) {
    let s = setup(&app).await;
    for route in ROUTES {
        let valid = route.valid_body();
        let field = string_field(route);
        let mut cases = vec![
            malformed("truncated by one byte", &valid[..valid.len() - 1]),
            malformed("truncated inside a string", format!("{{\"{field}\":\"abc")),
            malformed("trailing second object", format!("{valid}{{}}")),
            malformed("trailing garbage", format!("{valid} x")),
            malformed("trailing bracket", format!("{valid}]")),
            malformed("single quotes", format!("{{'{field}': 'x'}}")),
            malformed(
                "trailing comma",
                format!("{},}}", &valid[..valid.len() - 1]),
            ),
            malformed("missing colon", format!("{{\"{field}\" \"x\"}}")),
            malformed("bare word", "hello"),
            malformed(
                "byte order mark",
                [b"\xEF\xBB\xBF".as_slice(), valid.as_bytes()].concat(),
            ),
            // The WAF refuses it before the parser would.
            case(
                "lone surrogate escape",
                format!("{{\"{field}\":\"\\ud800\"}}"),
                400,
                "waf.invalid_utf8",
            ),
            malformed(
                "raw control character in a string",
                format!("{{\"{field}\":\"a\u{1}b\"}}"),
            ),
            malformed("comment", format!("/* hi */{valid}")),
            invalid("bare JSON string", "\"hello\"", "body", "invalid_type"),
            invalid("bare JSON number", "42", "body", "invalid_type"),
            invalid("bare JSON boolean", "true", "body", "invalid_type"),
            invalid("empty array", "[]", "body", "invalid_value"),
            invalid(
                "a duplicate key",
                {
                    let [(k, v), (k2, v2)] = route.valid_fields();
                    format!("{{\"{k}\":{v},\"{k}\":{v},\"{k2}\":{v2}}}")
                },
                "body",
                "invalid_value",
            ),
        ];
        if let Route::PatchUser = route {
            // The first value is a valid (empty) patch: only the second one makes it malformed.
            cases.push(malformed("two objects", "{}{}"));
        }
        refuse_all(&app, &s, route, cases).await;
    }
}

async fn a_body_not_sent_as_json_is_refused_with_415(app: TestApp) {
    let s = setup(&app).await;
    for route in ROUTES {
        // A valid JSON body: only the declared media type is wrong.
        let valid = route.valid_body();
        let unsupported = |label: &str, ct: Option<&'static str>| {
            case(label, valid, 415, "request.unsupported_media_type").content_type(ct)
        };
        let cases = vec![
            unsupported("text/plain", Some("text/plain")),
            unsupported("no content type", None),
            unsupported("form", Some("application/x-www-form-urlencoded")),
            unsupported("multipart", Some("multipart/form-data; boundary=x")),
            unsupported("xml", Some("application/xml")),
            unsupported("text/json", Some("text/json")),
            unsupported("json-patch", Some("application/json-patch+json")),
            unsupported("a json prefix", Some("application/jsonx")),
            unsupported("a list of types", Some("application/json, text/plain")),
            unsupported("empty content type", Some("")),
            case(
                "a form body",
                "name=x&slug=y&email=a%40b.test",
                415,
                "request.unsupported_media_type",
            )
            .content_type(Some("application/x-www-form-urlencoded")),
        ];
        refuse_all(&app, &s, route, cases).await;
    }
}

async fn invalid_utf8_is_refused_with_400(app: TestApp) {
    let s = setup(&app).await;
    for route in ROUTES {
        let field = string_field(route);
        let with_bytes =
            |bytes: &[u8]| [format!("{{\"{field}\":\"a").as_bytes(), bytes, b"b\"}"].concat();
        let utf8 =
            |label: &str, bytes: &[u8]| case(label, with_bytes(bytes), 400, "waf.invalid_utf8");
        let cases = vec![
            utf8("a lone 0xFF", b"\xFF"),
            utf8("an overlong slash", b"\xC0\xAF"),
            utf8("an encoded surrogate", b"\xED\xA0\x80"),
            utf8("a truncated sequence", b"\xE2\x82"),
            utf8("latin-1", b"caf\xE9"),
            utf8("a code point past U+10FFFF", b"\xF4\x90\x80\x80"),
            case(
                "invalid bytes outside a string",
                [route.valid_body().as_bytes(), b"\xFF"].concat(),
                400,
                "waf.invalid_utf8",
            ),
        ];
        refuse_all(&app, &s, route, cases).await;
    }
}

async fn an_unknown_field_is_refused_with_400_and_nothing_is_written(app: TestApp) {
    let s = setup(&app).await;
    let unknown = |route: Route, name: &str, raw: &str| {
        case(
            format!("unknown field {name}"),
            route.with(name, raw),
            400,
            "request.unknown_field",
        )
    };
    let id = crate::unknown_id();
    refuse_all(
        &app,
        &s,
        Route::CreateTenant,
        vec![
            unknown(Route::CreateTenant, "is_admin", "true"),
            unknown(Route::CreateTenant, "id", &format!("\"{id}\"")),
            unknown(Route::CreateTenant, "path", "\"/\""),
            unknown(Route::CreateTenant, "Name", "\"Shadow\""),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::CreateUser,
        vec![
            unknown(Route::CreateUser, "tenant_id", &format!("\"{id}\"")),
            unknown(Route::CreateUser, "status", "\"active\""),
            unknown(Route::CreateUser, "token_version", "0"),
            unknown(
                Route::CreateUser,
                "capabilities",
                "[\"platform.tenant.create_partner\"]",
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::PatchUser,
        vec![
            unknown(Route::PatchUser, "created_at", "\"2020-01-01T00:00:00Z\""),
            unknown(Route::PatchUser, "tenant_id", &format!("\"{id}\"")),
            unknown(Route::PatchUser, "token_version", "0"),
            unknown(Route::PatchUser, "id", &format!("\"{id}\"")),
        ],
    )
    .await;
}

async fn the_unknown_field_refusal_names_exactly_that_field(app: TestApp) {
    let s = setup(&app).await;
    for route in ROUTES {
        let cases = ["is_admin", "tenant_id", "x"]
            .into_iter()
            .map(|name| Case {
                detail: Some(format!("Unknown field `{name}`.")),
                ..case(
                    format!("unknown field {name}"),
                    route.with(name, "true"),
                    400,
                    "request.unknown_field",
                )
            })
            .collect();
        refuse_all(&app, &s, route, cases).await;
    }
}

async fn a_value_of_the_wrong_type_is_refused_with_422_naming_the_field(app: TestApp) {
    let s = setup(&app).await;
    let t = |body: &str, field: &str, code: &'static str| {
        invalid(body, body.as_bytes().to_vec(), field, code)
    };
    refuse_all(
        &app,
        &s,
        Route::CreateTenant,
        vec![
            t(r#"{"name":5,"slug":"wrong-type"}"#, "name", "invalid_type"),
            t(
                r#"{"name":["x"],"slug":"wrong-type"}"#,
                "name",
                "invalid_type",
            ),
            t(
                r#"{"name":{"a":1},"slug":"wrong-type"}"#,
                "name",
                "invalid_type",
            ),
            t(
                r#"{"name":null,"slug":"wrong-type"}"#,
                "name",
                "invalid_type",
            ),
            t(r#"{"name":"x","slug":true}"#, "slug", "invalid_type"),
            t(
                r#"{"name":"x","slug":"wrong-type","parent_id":7}"#,
                "parent_id",
                "invalid_type",
            ),
            t(
                r#"{"name":"x","slug":"wrong-type","kind":"emperor"}"#,
                "kind",
                "invalid_value",
            ),
            t(
                r#"{"name":"x","slug":"wrong-type","kind":"Partner"}"#,
                "kind",
                "invalid_value",
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::CreateUser,
        vec![
            t(
                r#"{"email":"a@wrong.test","roles":"admin"}"#,
                "roles",
                "invalid_type",
            ),
            t(
                r#"{"email":"a@wrong.test","roles":[1]}"#,
                "roles[0]",
                "invalid_type",
            ),
            t(
                r#"{"email":"a@wrong.test","roles":{"tenant_admin":true}}"#,
                "roles",
                "invalid_type",
            ),
            t(
                r#"{"email":"a@wrong.test","roles":null}"#,
                "roles",
                "invalid_type",
            ),
            t(r#"{"email":5,"roles":["member"]}"#, "email", "invalid_type"),
            t(
                r#"{"email":"a@wrong.test","phone":14155550123}"#,
                "phone",
                "invalid_type",
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::PatchUser,
        vec![
            t(r#"{"status":"frozen"}"#, "status", "invalid_value"),
            t(r#"{"status":"Disabled"}"#, "status", "invalid_value"),
            t(r#"{"roles":"admin"}"#, "roles", "invalid_type"),
            t(r#"{"roles":["member",null]}"#, "roles[1]", "invalid_type"),
        ],
    )
    .await;
}

async fn a_non_string_value_for_a_choice_field_is_refused_with_422_naming_the_field(app: TestApp) {
    // `kind` and `status` accept one of a few strings. A well-formed body holding a number, a boolean,
    // an array or an object there is a wrong type like any other: 422 naming the field, not
    // "not well-formed JSON".
    let s = setup(&app).await;
    let t =
        |body: &str, field: &str| invalid(body, body.as_bytes().to_vec(), field, "invalid_type");
    refuse_all(
        &app,
        &s,
        Route::CreateTenant,
        vec![
            t(r#"{"name":"x","slug":"wrong-type","kind":1}"#, "kind"),
            t(r#"{"name":"x","slug":"wrong-type","kind":true}"#, "kind"),
            t(
                r#"{"name":"x","slug":"wrong-type","kind":["partner"]}"#,
                "kind",
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::PatchUser,
        vec![
            t(r#"{"status":true}"#, "status"),
            t(r#"{"status":0}"#, "status"),
            t(r#"{"status":["disabled"]}"#, "status"),
        ],
    )
    .await;
}

async fn a_missing_required_field_is_refused_with_422_naming_the_field(app: TestApp) {
    let s = setup(&app).await;
    let t = |body: &str, field: &str| invalid(body, body.as_bytes().to_vec(), field, "required");
    refuse_all(
        &app,
        &s,
        Route::CreateTenant,
        vec![
            t(r#"{"name":"No Slug"}"#, "slug"),
            t(r#"{"slug":"no-name"}"#, "name"),
            t(r#"{}"#, "name"),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::CreateUser,
        vec![
            t(r#"{"roles":["member"]}"#, "email"),
            t(r#"{"phone":"+14155550123"}"#, "email"),
            t(r#"{}"#, "email"),
        ],
    )
    .await;
}

async fn a_deeply_nested_body_is_refused_and_the_server_stays_up(app: TestApp) {
    let s = setup(&app).await;
    let depth = 10_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    for route in ROUTES {
        // The WAF refuses every deep body (nesting beyond `waf.max_depth`) before it is parsed.
        let deep = |label: &str, body: Vec<u8>| case(label, body, 400, "waf.too_deep");
        let cases = vec![
            deep("10,000 nested arrays", arrays.clone().into_bytes()),
            deep("10,000 unclosed arrays", "[".repeat(depth).into_bytes()),
            deep(
                "100,000 nested arrays",
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            ),
            deep("10,000 nested objects", objects.clone().into_bytes()),
            {
                // Deep arrays as the value of a field (a role list, or the tenant's name).
                let field = match route {
                    Route::CreateTenant => "name",
                    Route::CreateUser | Route::PatchUser => "roles",
                };
                deep(
                    &format!("10,000 nested arrays in {field}"),
                    route.with(field, &arrays),
                )
            },
        ];
        refuse_all(&app, &s, route, cases).await;
    }
    // The server is still up and still serves authenticated requests.
    assert_eq!(app.anonymous().get("/health").await.status(), 200);
    assert_eq!(s.admin.get("/v1/users").await.status(), 200);
}

async fn nul_and_control_characters_are_refused(app: TestApp) {
    let s = setup(&app).await;
    // NUL is refused by the WAF (400) before any field is looked at; other controls by the field (422).
    let nul = |label: &str, body: &str| case(label, body.to_owned(), 400, "waf.nul_character");
    let name = |label: &str, raw: &str| {
        invalid(
            label,
            format!("{{\"name\":\"{raw}\",\"slug\":\"control\"}}"),
            "name",
            "invalid_name",
        )
    };
    refuse_all(
        &app,
        &s,
        Route::CreateTenant,
        vec![
            nul("NUL in the name", r#"{"name":"a\u0000b","slug":"control"}"#),
            nul(
                "a trailing NUL",
                r#"{"name":"Acme\u0000","slug":"control"}"#,
            ),
            name("BEL", "\\u0007bell"),
            name("an ANSI escape", "\\u001b[31mred"),
            name("a newline", "line\\nbreak"),
            name("a tab", "tab\\there"),
            name("DEL", "del\\u007f"),
            name("a C1 control", "csi\\u009bx"),
            nul("only NULs", r#"{"name":"\u0000\u0000","slug":"control"}"#),
            nul(
                "NUL in the slug",
                r#"{"name":"Control","slug":"con\u0000trol"}"#,
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::CreateUser,
        vec![
            nul("NUL in the e-mail", r#"{"email":"a\u0000b@control.test"}"#),
            nul(
                "a trailing NUL in the e-mail",
                r#"{"email":"ab@control.test\u0000"}"#,
            ),
            invalid(
                "a newline in the e-mail",
                r#"{"email":"ab@control.test\nBcc: x@y.test"}"#,
                "email",
                "invalid_email",
            ),
            nul(
                "NUL in the phone",
                r#"{"email":"ab@control.test","phone":"+1415555\u00000123"}"#,
            ),
            nul(
                "NUL in a role",
                r#"{"email":"ab@control.test","roles":["member\u0000"]}"#,
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::PatchUser,
        vec![
            nul("NUL in the status", r#"{"status":"active\u0000"}"#),
            nul("NUL in a role", r#"{"roles":["viewer\u0000"]}"#),
        ],
    )
    .await;
}

async fn huge_numbers_are_refused_without_a_server_error(app: TestApp) {
    let s = setup(&app).await;
    let ten_to_the_100k = format!("1{}", "0".repeat(100_000));
    for route in ROUTES {
        // A number where a string belongs: PATCH has no plain string field, so a role name is used.
        let (field, at) = match route {
            Route::PatchUser => ("roles", "roles[0]"),
            _ => (string_field(route), string_field(route)),
        };
        let number = |n: &str| match route {
            Route::PatchUser => route.with(field, &format!("[{n}]")),
            _ => route.with(field, n),
        };
        let cases = vec![
            malformed("1e400", number("1e400")),
            malformed("-1e400", number("-1e400")),
            malformed("1e999999999", number("1e999999999")),
            malformed("a 100,001-digit integer", number(&ten_to_the_100k)),
            invalid(
                "a 30-digit integer",
                number("123456789012345678901234567890"),
                at,
                "invalid_type",
            ),
            invalid("2^64", number("18446744073709551616"), at, "invalid_type"),
            invalid(
                "-2^63-1",
                number("-9223372036854775809"),
                at,
                "invalid_type",
            ),
            invalid("a tiny float", number("1e-400"), at, "invalid_type"),
        ];
        refuse_all(&app, &s, route, cases).await;
    }
}

async fn an_empty_body_and_json_null_are_refused(app: TestApp) {
    let s = setup(&app).await;
    for route in ROUTES {
        let cases = vec![
            malformed("an empty body", ""),
            malformed("only whitespace", " \n\t "),
            case(
                "an empty body without a content type",
                "",
                415,
                "request.unsupported_media_type",
            )
            .content_type(None),
            invalid("JSON null", "null", "body", "invalid_type"),
            invalid(
                "JSON null with whitespace",
                " null\n",
                "body",
                "invalid_type",
            ),
        ];
        refuse_all(&app, &s, route, cases).await;
    }
}

async fn no_error_response_echoes_the_submitted_value(app: TestApp) {
    // `refuse_all` asserts on every case that neither headers nor body contain MARKER.
    let s = setup(&app).await;
    let m = MARKER;
    refuse_all(
        &app,
        &s,
        Route::CreateTenant,
        vec![
            invalid(
                "an invalid slug",
                format!(r#"{{"name":"Echo","slug":"{}"}}"#, m.to_uppercase()),
                "slug",
                "invalid_slug",
            ),
            case(
                "a name with a NUL",
                format!(r#"{{"name":"{m}\u0000","slug":"echo"}}"#),
                400,
                "waf.nul_character",
            ),
            invalid(
                "a name too long",
                format!(r#"{{"name":"{m}{}","slug":"echo"}}"#, "x".repeat(300)),
                "name",
                "invalid_name",
            ),
            invalid(
                "an unknown kind",
                format!(r#"{{"name":"Echo","slug":"echo","kind":"{m}"}}"#),
                "kind",
                "invalid_value",
            ),
            invalid(
                "a wrong type",
                format!(r#"{{"name":["{m}"],"slug":"echo"}}"#),
                "name",
                "invalid_type",
            ),
            case(
                "a malformed parent id",
                format!(r#"{{"name":"Echo","slug":"echo","parent_id":"{m}"}}"#),
                404,
                "tenant.not_found",
            ),
            malformed("truncated JSON", format!(r#"{{"name":"{m}"#)),
            malformed(
                "a syntax error after the value",
                format!(r#"{{"name":"{m}" "slug"}}"#),
            ),
            case(
                "invalid UTF-8",
                [format!(r#"{{"name":"{m}"#).as_bytes(), b"\xFF\"}"].concat(),
                400,
                "waf.invalid_utf8",
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::CreateUser,
        vec![
            invalid(
                "an invalid e-mail",
                format!(r#"{{"email":"{m}@@"}}"#),
                "email",
                "invalid_email",
            ),
            invalid(
                "an e-mail without a domain",
                format!(r#"{{"email":"{m}"}}"#),
                "email",
                "invalid_email",
            ),
            invalid(
                "an invalid phone",
                format!(r#"{{"email":"echo@input.test","phone":"{m}"}}"#),
                "phone",
                "invalid_phone",
            ),
            invalid(
                "an unknown role",
                format!(r#"{{"email":"echo@input.test","roles":["{m}"]}}"#),
                "roles[0]",
                "unknown_role",
            ),
            invalid(
                "a wrong type",
                format!(r#"{{"email":["{m}"]}}"#),
                "email",
                "invalid_type",
            ),
            invalid(
                "an object for the e-mail",
                format!(r#"{{"email":{{"{m}":1}}}}"#),
                "email",
                "invalid_type",
            ),
        ],
    )
    .await;
    refuse_all(
        &app,
        &s,
        Route::PatchUser,
        vec![
            invalid(
                "an unknown status",
                format!(r#"{{"status":"{m}"}}"#),
                "status",
                "invalid_value",
            ),
            invalid(
                "an unknown role",
                format!(r#"{{"roles":["{m}"]}}"#),
                "roles[0]",
                "unknown_role",
            ),
            invalid(
                "a wrong type",
                format!(r#"{{"roles":"{m}"}}"#),
                "roles",
                "invalid_type",
            ),
        ],
    )
    .await;
}

each_backend!(
    malformed_or_non_object_json_is_refused_and_nothing_is_written,
    a_body_not_sent_as_json_is_refused_with_415,
    invalid_utf8_is_refused_with_400,
    an_unknown_field_is_refused_with_400_and_nothing_is_written,
    the_unknown_field_refusal_names_exactly_that_field,
    a_value_of_the_wrong_type_is_refused_with_422_naming_the_field,
    a_non_string_value_for_a_choice_field_is_refused_with_422_naming_the_field,
    a_missing_required_field_is_refused_with_422_naming_the_field,
    a_deeply_nested_body_is_refused_and_the_server_stays_up,
    nul_and_control_characters_are_refused,
    huge_numbers_are_refused_without_a_server_error,
    an_empty_body_and_json_null_are_refused,
    no_error_response_echoes_the_submitted_value,
);
