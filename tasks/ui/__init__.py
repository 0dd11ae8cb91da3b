"""UI loop: Selenium suites in headless Chromium, step by step."""
