"""What the manifest and the platform settings both check with: the safe YAML reader with line numbers
(:mod:`.yamlsafe`), field rules and name patterns (:mod:`.rules`), problem explanations (:mod:`.explain`)
and trusted reads of half-valid data (:mod:`.trusted`). It sits below both, and imports neither."""
