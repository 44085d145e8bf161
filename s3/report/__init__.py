"""What readers see: result records and tables (``tables``), published reference numbers
(``reference``), the figure style (``plotting``) and the pictures of class spaces (``space_plots``)."""
