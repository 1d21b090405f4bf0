"""Plans: phases of tasks that sessions work through."""
