import hypothesis

# A quick profile for local runs: pytest --hypothesis-profile dev. CI runs use the
# ci profile that vjpcheck registers: pytest --hypothesis-profile ci.
hypothesis.settings.register_profile("dev", max_examples=25)
