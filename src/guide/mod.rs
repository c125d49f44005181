#![doc = include_str!("index.md")]

// Doc-only modules: the guide, from `src/bin/chapter.rs` to this crate, one page per step.
// Each page is a markdown file next to this one, included as its module's documentation (as
// clap's `_tutorial` does), so that rustdoc checks every link into the code.

pub mod the_chapter_in_one_file {
    #![doc = concat!(
        include_str!("the_chapter_in_one_file.md"),
        "\n```rust,ignore\n",
        include_str!("../bin/chapter.rs"),
        "```\n"
    )]
}

pub mod rust_for_the_chapters_reader {
    #![doc = include_str!("rust_for_the_chapters_reader.md")]
}

pub mod step1_a_slow_client {
    #![doc = include_str!("step1_a_slow_client.md")]
}

pub mod step2_a_cap_on_connections {
    #![doc = include_str!("step2_a_cap_on_connections.md")]
}

pub mod step3_keep_alive {
    #![doc = include_str!("step3_keep_alive.md")]
}

pub mod step4_methods_headers_and_bodies {
    #![doc = include_str!("step4_methods_headers_and_bodies.md")]
}

pub mod step5_malformed_requests {
    #![doc = include_str!("step5_malformed_requests.md")]
}

pub mod step6_a_dead_backend {
    #![doc = include_str!("step6_a_dead_backend.md")]
}

pub mod step7_a_hung_backend {
    #![doc = include_str!("step7_a_hung_backend.md")]
}

pub mod step8_graceful_shutdown {
    #![doc = include_str!("step8_graceful_shutdown.md")]
}

pub mod compared_with_the_original {
    #![doc = include_str!("compared_with_the_original.md")]
}

pub mod configuration {
    #![doc = include_str!("configuration.md")]
}

pub mod failover {
    #![doc = include_str!("failover.md")]
}

pub mod operations {
    #![doc = include_str!("operations.md")]
}

pub mod behind_a_tls_terminator {
    #![doc = include_str!("behind_a_tls_terminator.md")]
}

pub mod many_copies {
    #![doc = include_str!("many_copies.md")]
}

pub mod drills {
    #![doc = include_str!("drills.md")]
}

pub mod lab {
    #![doc = include_str!("lab.md")]
}

pub mod performance {
    #![doc = include_str!("performance.md")]
}

pub mod testing {
    #![doc = include_str!("testing.md")]
}
