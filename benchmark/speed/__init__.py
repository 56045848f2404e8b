"""The speed table of every detector x framework, and this checkout's benchmarks against a
git ref."""
