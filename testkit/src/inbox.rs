//! Reading a citizen's inbox through the citizen API, page by page, as the app does.

use serde_json::Value;

/// The ids on each page of the inbox at `base` (`http://host:port`), newest first, following
/// the cursor until the last page. `bearer` is the citizen's token.
///
/// A `503` (the store is unavailable for a moment) is asked again, as the app does on
/// `Retry-After`, for up to a minute.
///
/// # Panics
/// When the API cannot be reached or answers something other than a page.
pub async fn inbox_pages(
    client: &reqwest::Client,
    base: &str,
    bearer: &str,
    page_size: usize,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/citizen/v1/messages?page_size={page_size}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let mut attempts = 0;
        let answer = loop {
            let answer = client
                .get(&url)
                .bearer_auth(bearer)
                .send()
                .await
                .expect("list the inbox");
            attempts += 1;
            if answer.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempts >= 300 {
                break answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let page: Value = answer.json().await.expect("a page of the inbox");
        pages.push(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|item| item["id"].as_str().expect("id").to_string())
                .collect(),
        );
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return pages,
        }
    }
}
