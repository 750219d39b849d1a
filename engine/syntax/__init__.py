"""Source text to AST: the grammar, the AST node types and the parser."""
