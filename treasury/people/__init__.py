"""People, their credentials and the signed decisions they make (design.md section 9)."""
