"""Values that lost a secret found inside a text are named as scrubbed, like those by key."""

from __future__ import annotations

from immunity.tasks.generate.capture import capture_issues
from immunity.tasks.shared.scrub import scrub, scrub_headers, scrub_url


def test_values_scrubbed_by_shape_are_named_as_not_replayed_as_sent() -> None:
    request = {
        "method": "POST",
        "url": scrub_url("https://shop.example.com/pay?next=retry+with+Bearer+abc.def-123&n=1"),
        "headers": scrub_headers({"X-Upstream": "Bearer abc.def-123", "Accept": "*/*"}),
        "body": scrub({"note": "password=hunter2&user=ada", "n": 1}),
    }
    assert capture_issues(request) == [
        "values were scrubbed before storage and are not replayed as sent: "
        "body $.note, header x-upstream, query next"
    ]


def test_a_clean_capture_names_nothing() -> None:
    request = {"method": "GET", "url": "https://shop.example.com/a?b=1", "headers": {}}
    assert capture_issues(request) == []
