"""Tables 1-7: specs (what each table holds), paper values, rendering and comparison."""
