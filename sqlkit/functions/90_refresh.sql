-- Remakes the capture functions of tables with options from the code just
-- installed (see 17_capture_with.sql). Last of the functions files, so that
-- everything it uses is in place.
SELECT cdc.refresh_capture_functions();
