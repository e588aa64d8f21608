"""Operations: the local stack and role processes, status and lag."""
